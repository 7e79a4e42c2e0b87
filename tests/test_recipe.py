"""Training recipes: key validation against the installed TRL, and every --dry-run check."""

import json
import shutil
import textwrap
from pathlib import Path

import polars as pl
import pytest
import trl

from alfa.cli import main
from alfa.data.pairs import PAIR_SCHEMA, SPLITS, write_split_files
from alfa.train.checks import check_recipe
from alfa.train.recipe import load_recipe
from alfa.yamlconfig import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pairs_dir(tmp_path):
    rows = [
        {
            "pair_id": f"p{i}",
            "qid": f"q{i}",
            "group_id": f"g{i}",
            "split": SPLITS[i % 3],
            "attribute": ["clarity", "specificity"][i % 2],
            "pair_type": "enhanced_vs_original",
            "prompt": [{"role": "user", "content": "My knee hurts."}],
            "chosen": [{"role": "assistant", "content": "When did it start?"}],
            "rejected": [{"role": "assistant", "content": "Anything else?"}],
            "chosen_similarity": 0.9,
            "rejected_similarity": 1.0,
            "rewriter": "m",
            "prompt_template_hash": "t",
            "attribute_pack": "core@d",
        }
        for i in range(12)
    ]
    write_split_files(pl.DataFrame(rows, schema=PAIR_SCHEMA), tmp_path / "pairs")
    return tmp_path / "pairs"


def _recipe(tmp_path, body: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def _base(model, pairs, extra_trl="", launch="{num_processes: 1}", top=""):
    return f"""\
        stage: dpo
        model: {{name_or_path: {model}}}
        data: {{pairs_dir: {pairs}, attributes: [specificity]}}
        launch: {launch}
        {top}
        trl:
          output_dir: out
          per_device_train_batch_size: 2
          gradient_accumulation_steps: 2
          beta: 0.1
        {extra_trl}
        """


@pytest.fixture(scope="module")
def every_attribute_pairs(tmp_path_factory):
    """Pairs for every attribute of the shipped packs and of the methods, in all three splits."""
    from alfa.data.attributes import load_pack, shipped_packs

    attributes = sorted({a for pack in shipped_packs() for a in load_pack(pack).attributes})
    attributes += ["flaws", "information_gain", "multiturn_reward"]  # the methods' pairs (flaws, UoT, CollabLLM)
    rows = [
        {
            "pair_id": f"p{i}-{a}",
            "qid": f"q{i}",
            "group_id": f"g{i}",
            "split": s,
            "attribute": a,
            "pair_type": t,
            "prompt": [{"role": "user", "content": "My knee hurts."}],
            "chosen": [{"role": "assistant", "content": "When did it start?"}],
            "rejected": [{"role": "assistant", "content": "Anything else?"}],
            "chosen_similarity": 0.9,
            "rejected_similarity": 1.0,
            "rewriter": "m",
            "prompt_template_hash": "t",
            "attribute_pack": "core@d",
        }
        for i, s in enumerate(SPLITS)
        for a in attributes
        for t in ("enhanced_vs_corrupted", "enhanced_vs_original", "original_vs_corrupted")
    ]
    d = tmp_path_factory.mktemp("every-attribute") / "pairs"
    write_split_files(pl.DataFrame(rows, schema=PAIR_SCHEMA), d)
    return d


SHIPPED = sorted((ROOT / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("shipped", SHIPPED, ids=[str(p.relative_to(ROOT / "recipes")) for p in SHIPPED])
def test_every_shipped_recipe_passes_its_dry_run(
    shipped, tmp_path, tiny_model_dir, every_attribute_pairs, capsys, request
):
    """Each recipe as shipped, with only the places it reads from pointed at test stand-ins of the same
    kind (a chat model for policies, MiniLM for the MiniLM reward models; pairs covering every
    attribute) and its paths made absolute: every dry-run check passes, the launch command is printed."""
    import yaml

    from alfa.llm.embedded import minilm_path

    data = yaml.safe_load(shipped.read_text())
    data["model"]["name_or_path"] = str(minilm_path() if "minilm" in data["model"]["name_or_path"] else tiny_model_dir)
    if "dialogues_dir" in data["data"]:  # conversations: a dialogues dir of two
        dialogues = tmp_path / "dialogues"
        (dialogues / "data").mkdir(parents=True)
        messages = [{"role": "user", "content": "Dinner?"}, {"role": "assistant", "content": "Any allergies?"}]
        pl.DataFrame({"messages": [messages, messages]}).write_parquet(dialogues / "data" / "train.parquet")
        data["data"]["dialogues_dir"] = str(dialogues)
    elif "tasks_dir" in data["data"]:  # consultations: the tasks of two real MedQA dev cases (or GSM8K testbed ones)
        from alfa.methods.sml import write_tasks_dir
        from alfa.methods.tasks import read_cases

        cases = request.getfixturevalue("medqa_path")
        if "retrieved_premise" in data["rollout"]["rewards"]:  # the missing-premise testbed's word problems
            from alfa.eval.gsm8k import write_gsm8k_cases

            write_gsm8k_cases(request.getfixturevalue("gsm8k_path"), tmp_path / "gsm8k")
            cases = tmp_path / "gsm8k" / "train.jsonl"
        write_tasks_dir(read_cases(cases, 2), tmp_path / "tasks")
        data["data"]["tasks_dir"] = str(tmp_path / "tasks")
    else:
        data["data"]["pairs_dir"] = str(every_attribute_pairs)
    data["trl"]["output_dir"] = str(tmp_path / "out")
    if data.get("launch", {}).get("deepspeed"):
        data["launch"]["deepspeed"] = str(ROOT / data["launch"]["deepspeed"])
    path = tmp_path / shipped.name
    path.write_text(yaml.safe_dump(data))
    assert main(["train", str(path), "--dry-run"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "[FAIL]" not in out and f"-m alfa.cli train {path}" in out
    if "dialogues_dir" in data["data"]:
        assert "2 conversations (loss on the assistant's turns)" in out and "marked copy" in out
    if "tasks_dir" in data["data"]:
        partner = data["rollout"]["partner"]
        assert "train 2 tasks" in out and f"[ok] rollout.partner: {partner}" in out and "[ok] num_generations" in out
        for reward in data["rollout"]["rewards"]:
            assert f"[ok] rollout.rewards: {reward}: alfa.train.rewards" in out
        if "reward_weights" in data["trl"]:
            assert "[ok] reward_weights: 3 weights for 3 rewards" in out
    if data.get("launch", {}).get("deepspeed"):
        assert "[ok] deepspeed" in out and "--use_deepspeed" in out


def test_dry_run_passes_on_a_good_recipe_and_prints_the_launch_command(tmp_path, tiny_model_dir, pairs_dir, capsys):
    path = _recipe(
        tmp_path,
        _base(
            tiny_model_dir,
            pairs_dir,
            launch=f"{{num_processes: 2, deepspeed: {ROOT / 'configs/deepspeed/zero2.json'}}}",
            top="global_batch_size: 8",
        ),
    )
    assert main(["train", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[ok] global_batch: 2 processes x 2 per device x 2 accumulation = 8" in out
    assert "[ok] data:" in out and "train 2" in out  # specificity pairs in train only
    assert "[ok] chat_template" in out and "ZeRO stage 2" in out
    assert "accelerate launch --num_processes 2" in out and "--use_deepspeed --deepspeed_config_file" in out
    assert f"-m alfa.cli train {path}" in out


def test_unknown_keys_name_the_line_and_the_trl_version(tmp_path, tiny_model_dir, pairs_dir):
    with pytest.raises(
        ConfigError,
        match=r"recipe.yaml:11 \(trl.max_prompt_length\): 'max_prompt_length' is not a field "
        rf"of trl.DPOConfig in the installed TRL {trl.__version__}",
    ):
        load_recipe(_recipe(tmp_path, _base(tiny_model_dir, pairs_dir, extra_trl="  max_prompt_length: 128")))
    with pytest.raises(ConfigError, match=r"recipe.yaml:4 \(launch.num_procs\): unknown key 'num_procs'"):
        load_recipe(_recipe(tmp_path, _base(tiny_model_dir, pairs_dir, launch="{num_procs: 2}")))
    with pytest.raises(ConfigError, match="stage must be one of"):
        load_recipe(_recipe(tmp_path, _base(tiny_model_dir, pairs_dir).replace("stage: dpo", "stage: ppo")))


def test_failed_checks(tmp_path, tiny_model_dir, pairs_dir, capsys):
    checks = lambda body: {c.name: c for c in check_recipe(load_recipe(_recipe(tmp_path, body)))}  # noqa: E731
    c = checks(_base(tiny_model_dir, pairs_dir, top="global_batch_size: 256"))
    assert not c["global_batch"].ok and "global_batch_size is 256" in c["global_batch"].message
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto", "zero_optimisation": {"stage": 2}}))
    c = checks(_base(tiny_model_dir, pairs_dir, launch=f"{{deepspeed: {ds}}}"))
    assert not c["deepspeed"].ok and "zero_optimisation" in c["deepspeed"].message
    ds.write_text(
        json.dumps(
            {
                "train_micro_batch_size_per_gpu": 16,
                "gradient_accumulation_steps": "auto",
                "zero_optimization": {"stage": 2},
            }
        )
    )
    c = checks(_base(tiny_model_dir, pairs_dir, launch=f"{{deepspeed: {ds}}}"))
    assert (
        not c["deepspeed"].ok
        and "train_micro_batch_size_per_gpu is 16 but the recipe gives 2" in c["deepspeed"].message
    )
    c = checks(_base(tiny_model_dir, pairs_dir).replace("attributes: [specificity]", "attributes: [empathy]"))
    assert not c["data"].ok and "no pairs for attribute(s) ['empathy']" in c["data"].message
    c = checks(_base(tiny_model_dir, pairs_dir).replace("attributes: [specificity]", "eval_split: dev"))
    assert not c["data"].ok and "split 'dev' not found" in c["data"].message
    no_template = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, no_template)
    cfg = json.loads((no_template / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(cfg))
    for f in no_template.glob("chat_template.*"):
        f.unlink()
    c = checks(_base(no_template, pairs_dir))
    assert not c["chat_template"].ok and "no chat template" in c["chat_template"].message
    path = _recipe(tmp_path, _base(tmp_path / "nowhere", pairs_dir))
    assert main(["train", str(path), "--dry-run"]) == 1
    captured = capsys.readouterr()
    assert "[FAIL] model" in captured.out and "check(s) failed" in captured.err


def test_report_to_defaults_to_tensorboard_and_a_missing_logger_fails_the_dry_run(
    tmp_path, tiny_model_dir, pairs_dir, capsys
):
    import importlib.util

    checks = lambda body: {c.name: c for c in check_recipe(load_recipe(_recipe(tmp_path, body)))}  # noqa: E731
    recipe = load_recipe(_recipe(tmp_path, _base(tiny_model_dir, pairs_dir)))
    assert recipe.trl["report_to"] == ["tensorboard"]
    assert checks(_base(tiny_model_dir, pairs_dir))["report_to"].ok  # tensorboard is in the train extra
    c = checks(_base(tiny_model_dir, pairs_dir, extra_trl="  report_to: [tensorbored]"))
    assert not c["report_to"].ok and "unknown" in c["report_to"].message
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here: the missing-logger half cannot be checked")
    path = _recipe(tmp_path, _base(tiny_model_dir, pairs_dir, extra_trl="  report_to: [wandb]"))
    assert main(["train", str(path), "--dry-run"]) == 1
    assert "[FAIL] report_to: trl.report_to ['wandb']: not installed; `pip install wandb`" in capsys.readouterr().out


def test_an_empty_eval_split_with_evaluation_on_is_refused_before_the_model_loads(
    tmp_path, tiny_model_dir, pairs_dir, capsys
):
    """A per-attribute run whose attribute has no validation pairs (thin data) while eval_strategy asks for
    evaluation: the Trainer would fail after loading the model; alfa says what to change, up front."""
    from alfa.train.run import run_recipe

    validation = pairs_dir / "data" / "validation.parquet"
    pl.read_parquet(validation).filter(pl.col("attribute") == "clarity").write_parquet(validation)
    body = _base(tiny_model_dir, pairs_dir, extra_trl="  eval_strategy: epoch\n          bf16: false")
    path = _recipe(tmp_path, body)
    assert main(["train", str(path), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] data:" in out and "the 'validation' split has no pairs" in out and "eval_strategy: 'no'" in out
    with pytest.raises(ValueError, match="the 'validation' split has no pairs"):
        run_recipe(path)
    assert not (tmp_path / "out").exists()
    # without evaluation the same selection is fine
    assert {c.name: c for c in check_recipe(load_recipe(_recipe(tmp_path, _base(tiny_model_dir, pairs_dir))))}[
        "data"
    ].ok


def test_multi_node_dry_run_prints_each_nodes_exact_command(tmp_path, tiny_model_dir, pairs_dir, capsys):
    """num_processes counts per machine; accelerate's --num_processes is the total over all machines."""
    path = _recipe(
        tmp_path,
        _base(
            tiny_model_dir,
            pairs_dir,
            launch="{num_processes: 8, num_machines: 2, "
            "main_process_ip: node0.cluster.example, main_process_port: 29511}",
            top="global_batch_size: 64",
        ),
    )
    assert main(["train", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[ok] global_batch: 16 processes x 2 per device x 2 accumulation = 64" in out
    lines = [line for line in out.splitlines() if line.startswith("launch on machine")]
    assert len(lines) == 2
    for rank, line in enumerate(lines):
        assert line.startswith(f"launch on machine {rank} of 2: ")
        assert (
            f"--num_processes 16 --num_machines 2 --mixed_precision no --machine_rank {rank} "
            "--main_process_ip node0.cluster.example --main_process_port 29511"
        ) in line
        assert line.endswith(f"--multi_gpu -m alfa.cli train {path} --machine-rank {rank}")


def test_multi_node_without_the_main_address_is_refused(tmp_path, tiny_model_dir, pairs_dir, capsys):
    path = _recipe(tmp_path, _base(tiny_model_dir, pairs_dir, launch="{num_processes: 8, num_machines: 2}"))
    assert main(["train", str(path), "--dry-run"]) == 2
    assert "set launch.main_process_ip" in capsys.readouterr().err


def test_set_overrides_are_checked_like_the_yaml(tmp_path, tiny_model_dir, pairs_dir, capsys):
    path = _recipe(tmp_path, _base(tiny_model_dir, pairs_dir))
    assert (
        main(["train", str(path), "--dry-run", "--set", "trl.learning_rate=1e-6", "--set", "data.attributes=[clarity]"])
        == 0
    )
    out = capsys.readouterr().out
    resolved = json.loads(out[out.index("{") : out.index("\n}\n") + 2])
    assert resolved["trl"]["learning_rate"] == 1e-6 and resolved["data"]["attributes"] == ["clarity"]
    assert "# --set trl.learning_rate=1e-6" in out
    assert "--set trl.learning_rate=1e-6 --set 'data.attributes=[clarity]'" in out  # passed on to the launch
    for bad, message in (
        (
            "trl.learnin_rate=1e-6",
            "--set trl.learnin_rate=1e-6 (trl.learnin_rate): 'learnin_rate' is not a field of trl.DPOConfig",
        ),
        ("model.revision=main", "--set model.revision=main (model.revision): unknown key 'revision'"),
        ("data.attributes=clarity", "expected a list"),
        ("trl.learning_rate", "expected KEY.PATH=VALUE"),
    ):
        assert main(["train", str(path), "--dry-run", "--set", bad]) == 2
        assert message in capsys.readouterr().err, bad


def test_trl_values_of_the_wrong_type_or_outside_their_choices_stop_the_dry_run(
    tmp_path, tiny_model_dir, pairs_dir, capsys
):
    """The issue's reproductions: `learning_rate: 1e-3` (YAML text, AdamW raised after the model loaded),
    `loss_type: sigmod` and `per_device_train_batch_size: two` (`invalid literal for int()`, no file or line)."""
    body = _base(tiny_model_dir, pairs_dir, extra_trl="  learning_rate: 1e-3\n          loss_type: sigmod")
    path = _recipe(tmp_path, body.replace("per_device_train_batch_size: 2", "per_device_train_batch_size: two"))
    assert main(["train", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    lines = path.read_text().splitlines()
    line_of = {k: next(i for i, t in enumerate(lines, 1) if t.strip().startswith(k + ":")) for k in
               ("learning_rate", "loss_type", "per_device_train_batch_size")}  # fmt: skip
    assert f"{path}:{line_of['learning_rate']} (trl.learning_rate): '1e-3' is text" in err and "1.0e-3" in err
    assert f"{path}:{line_of['loss_type']} (trl.loss_type): 'sigmod' is not one of sigmoid, hinge" in err
    assert (
        f"{path}:{line_of['per_device_train_batch_size']} (trl.per_device_train_batch_size): 'two' is not a number"
        in err
    )
    # the same recipe written right passes
    good = _recipe(
        tmp_path, _base(tiny_model_dir, pairs_dir, extra_trl="  learning_rate: 1.0e-3\n          loss_type: sigmoid")
    )
    assert main(["train", str(good), "--dry-run"]) == 0


def test_a_missing_data_dir_or_model_folder_names_the_command_that_makes_it(tmp_path, tiny_model_dir, capsys):
    """The issue's reproduction: every missing data dir said "build the pairs with `alfa pairs`" whatever made it
    (CollabLLM pairs come from `alfa collab build`), and a missing model folder "give a local model folder"."""
    from alfa.train.recipe import load_recipe

    collab = ROOT / "recipes" / "smollm2-135m" / "dpo_collab_cpu.yaml"
    body = collab.read_text().replace("pairs_dir: runs/collab-240", f"pairs_dir: {tmp_path / 'nowhere'}")
    body = body.replace("name_or_path: ~/.cache/alfa/models/SmolLM2-135M-Instruct", f"name_or_path: {tmp_path}/m")
    path = _recipe(tmp_path, body)
    assert main(["train", str(path), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "split 'train' not found; build the pairs with `alfa collab build" in out and "-o runs/collab-240`" in out
    assert "no config.json: make the model folder with `alfa models export smollm2" in out
    # every shipped recipe names how its model and its data are made (StaR-GATE sets its dialogues dir itself;
    # the paper-scale recipe starts from the user's own SFT checkpoint)
    for shipped in SHIPPED:
        recipe = load_recipe(shipped)
        assert recipe.data.built_by or recipe.data.dialogues_dir, shipped
        assert recipe.model.built_by or "paper-scale" in str(shipped), shipped


def test_reading_a_dpo_recipe_does_not_load_the_dialogue_layer():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from alfa.train.recipe import load_recipe\n"
        "load_recipe('recipes/smollm2-135m/dpo_core_cpu.yaml')\n"
        "print(sorted(m for m in sys.modules if m.startswith('alfa.dialogue')))\n"
    )
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_system_prompt_puts_the_consultation_turn_before_each_pair_prompt(
    tmp_path, tiny_model_dir, pairs_dir, every_attribute_pairs
):
    """Pairs whose prompt is the case text train in the consultation's format once the recipe names its system
    turn; the shipped testbed recipe names it word for word, and a dialogues or tasks recipe cannot."""
    import yaml

    from alfa.dialogue.consult import PROBLEM_STUDENT_SYSTEM
    from alfa.train.run import load_split

    plain = load_split(load_recipe(_recipe(tmp_path, _base(tiny_model_dir, pairs_dir))), "train")
    body = _base(tiny_model_dir, pairs_dir).replace(
        "attributes: [specificity]}", f"attributes: [specificity], system_prompt: {PROBLEM_STUDENT_SYSTEM!r}}}"
    )
    framed = load_split(load_recipe(_recipe(tmp_path, body)), "train")
    assert len(framed) == len(plain) > 0 and framed["chosen"] == plain["chosen"]
    for before, after in zip(plain["prompt"], framed["prompt"]):
        assert before[0]["role"] == "user" and after == [{"role": "system", "content": PROBLEM_STUDENT_SYSTEM}, *before]
    # SFT on the originals (pairs of every type, so there are originals to copy) carries the same system turn
    sft_body = _base(tiny_model_dir, every_attribute_pairs).replace("stage: dpo", "stage: sft").replace("beta: 0.1", "")
    sft_body = sft_body.replace("attributes: [specificity]}", f"system_prompt: {PROBLEM_STUDENT_SYSTEM!r}}}")
    sft = load_split(load_recipe(_recipe(tmp_path, sft_body)), "train")
    assert len(sft) > 0 and all(p[0] == {"role": "system", "content": PROBLEM_STUDENT_SYSTEM} for p in sft["prompt"])
    for name in ("dpo_premise_cpu", "sft_premise_cpu", "dpo_premise_from_sft_cpu"):  # the testbed's ALFA recipes
        shipped = yaml.safe_load((ROOT / f"recipes/smollm2-135m/{name}.yaml").read_text())
        assert shipped["data"]["system_prompt"] == PROBLEM_STUDENT_SYSTEM, name
    dialogues = body.replace(f"pairs_dir: {pairs_dir}", f"dialogues_dir: {pairs_dir}").replace(
        "stage: dpo", "stage: sft"
    )
    with pytest.raises(ConfigError, match="system_prompt is for pairs"):
        load_recipe(_recipe(tmp_path, dialogues))
