"""Merging with mergekit: linear 0.5/0.5 is the exact average; incompatible models are refused first.
Merging LoRA adapters with peft: cat 0.5/0.5 is the exact average of the weight deltas; incompatible
adapters (rank, base model, not an adapter) are refused first."""

import json
import shutil
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from alfa.cli import main
from alfa.train.merge import check_compatible, load_merge_recipe
from alfa.yamlconfig import ConfigError


@pytest.fixture(scope="module")
def three_models(tmp_path_factory, tiny_model_dir):
    """The tiny Llama and two copies with different weights (as if trained on different attributes)."""
    root = tmp_path_factory.mktemp("models")
    dirs = []
    for seed in range(3):
        d = root / f"m{seed}"
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        model.save_pretrained(d)
        for f in tiny_model_dir.glob("tokenizer*"):
            shutil.copy(f, d)
        for f in tiny_model_dir.glob("chat_template*"):
            shutil.copy(f, d)
        dirs.append(d)
    return dirs


def _weights(d):
    return load_file(str(next(d.glob("*.safetensors"))))


def _yaml(tmp_path, body):
    p = tmp_path / "merge.yaml"
    p.write_text(textwrap.dedent(body))
    return p


def test_linear_half_half_is_the_exact_average_and_leave_one_out(tmp_path, three_models):
    a, b, c = three_models
    path = _yaml(
        tmp_path,
        f"""\
        method: linear
        models: [{a}, {b}, {c}]
        output_dir: {tmp_path / "uniform"}
        leave_one_out: true
        """,
    )
    assert main(["merge", str(path)]) == 0
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    merged = _weights(tmp_path / "uniform")
    for k in wa:
        torch.testing.assert_close(merged[k], (wa[k] + wb[k] + wc[k]) / 3, rtol=0, atol=1e-6)
    pair = _weights(tmp_path / "uniform" / "without-m2")  # a and b, 0.5 / 0.5
    for k in wa:
        torch.testing.assert_close(pair[k], (wa[k] + wb[k]) / 2, rtol=0, atol=1e-6)
    assert (tmp_path / "uniform" / "without-m0").is_dir() and (tmp_path / "uniform" / "without-m1").is_dir()
    # the merged folder is a loadable model with its tokenizer
    AutoModelForCausalLM.from_pretrained(tmp_path / "uniform")
    assert (
        json.loads((tmp_path / "uniform" / "alfa_merge.json").read_text())["mergekit_config"]["merge_method"]
        == "linear"
    )


def test_task_arithmetic_against_a_base(tmp_path, three_models):
    base, a, b = three_models
    path = _yaml(
        tmp_path,
        f"""\
        method: task_arithmetic
        models: [{a}, {b}]
        base_model: {base}
        weights: [0.5, 0.5]
        output_dir: {tmp_path / "ta"}
        """,
    )
    assert main(["merge", str(path)]) == 0
    wbase, wa, wb = _weights(base), _weights(a), _weights(b)
    merged = _weights(tmp_path / "ta")
    for k in wa:
        expected = wbase[k] + 0.5 * (wa[k] - wbase[k]) + 0.5 * (wb[k] - wbase[k])
        torch.testing.assert_close(merged[k], expected, rtol=0, atol=1e-5)


def test_incompatible_models_are_refused_before_merging(tmp_path, three_models, capsys):
    from transformers import LlamaConfig, LlamaForCausalLM

    a = three_models[0]
    cfg = LlamaConfig.from_pretrained(a)
    cfg.hidden_size, cfg.intermediate_size = 32, 64
    wide = tmp_path / "other"
    LlamaForCausalLM(cfg).save_pretrained(wide)
    for f in a.glob("tokenizer*"):
        shutil.copy(f, wide)
    with pytest.raises(ValueError, match="differ in the shape of"):
        check_compatible([a, wide])
    path = _yaml(tmp_path, f"method: linear\nmodels: [{a}, {wide}]\noutput_dir: {tmp_path / 'x'}\n")
    assert main(["merge", str(path)]) == 2
    assert "differ in the shape of" in capsys.readouterr().err and not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="needs base_model"):
        load_merge_recipe(_yaml(tmp_path, f"method: ties\nmodels: [{a}, {a}]\noutput_dir: o\n"))
    with pytest.raises(ConfigError, match=r"merge.yaml:1 \(method\): method must be one of"):
        load_merge_recipe(_yaml(tmp_path, f"method: average\nmodels: [{a}, {a}]\noutput_dir: o\n"))


def test_shipped_merge_configs_parse():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs" / "merge").glob("*.yaml"))
    assert {c.stem for c in configs} >= {"uniform", "ties"}
    for c in configs:
        load_merge_recipe(c)


def test_a_home_relative_model_is_a_local_folder_for_mergekit(tmp_path, monkeypatch):
    """`~/...` (as the shipped recipes and premise_ties.yaml name SmolLM2) is resolved like any local folder, never
    passed on for mergekit to read as a Hub repo id; a path that is no folder is left as given."""
    from alfa.train.merge import local

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models" / "m").mkdir(parents=True)
    assert local("~/models/m") == str((tmp_path / "models" / "m").resolve())
    assert local("~/models/absent") == "~/models/absent" and local("org/model") == "org/model"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_dir):
    """Three peft LoRA adapters on the tiny Llama with random A and B (as if trained): a and b rank 4,
    c rank 8."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("adapters")
    dirs = {}
    for name, seed, r in (("a", 1, 4), ("b", 2, 4), ("c", 3, 8)):
        torch.manual_seed(seed)
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir),
            LoraConfig(
                r=r,
                lora_alpha=2 * r,
                target_modules=["q_proj", "v_proj", "down_proj"],
                init_lora_weights=False,
                task_type="CAUSAL_LM",
            ),
        )
        model.save_pretrained(root / name)
        dirs[name] = root / name
    return dirs


def _deltas(adapter_dir):
    """{module: scaling * B @ A} of a saved LoRA adapter."""
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    w = _weights(adapter_dir)
    scaling = cfg["lora_alpha"] / cfg["r"]
    return {
        k.removesuffix(".lora_A.weight"): scaling * w[k.replace("lora_A", "lora_B")] @ w[k]
        for k in w
        if k.endswith("lora_A.weight")
    }


def test_lora_cat_half_half_is_the_exact_average_of_the_deltas(tmp_path, adapters, tiny_model_dir):
    from peft import PeftModel

    path = _yaml(
        tmp_path,
        f"""\
        method: lora_cat
        models: [{adapters["a"]}, {adapters["b"]}]
        weights: [0.5, 0.5]
        output_dir: {tmp_path / "cat"}
        """,
    )
    assert main(["merge", str(path)]) == 0
    da, db, merged = _deltas(adapters["a"]), _deltas(adapters["b"]), _deltas(tmp_path / "cat")
    assert set(merged) == set(da) and len(merged) == 2 * 3  # 2 layers x 3 target modules
    for k in da:
        torch.testing.assert_close(merged[k], 0.5 * da[k] + 0.5 * db[k], rtol=0, atol=1e-5)
    assert json.loads((tmp_path / "cat" / "adapter_config.json").read_text())["r"] == 8  # ranks stacked
    # the output is a peft adapter on the same base
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "cat")


def test_incompatible_adapters_are_refused(tmp_path, adapters, three_models, capsys):
    a, c = adapters["a"], adapters["c"]
    path = _yaml(tmp_path, f"method: lora_linear\nmodels: [{a}, {c}]\noutput_dir: {tmp_path / 'x'}\n")
    assert main(["merge", str(path)]) == 2
    assert "LoRA ranks 4 and 8" in capsys.readouterr().err and not (tmp_path / "x").exists()
    other_base = tmp_path / "other-base"
    shutil.copytree(c, other_base)
    cfg = json.loads((other_base / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(three_models[1])
    (other_base / "adapter_config.json").write_text(json.dumps(cfg))
    path = _yaml(tmp_path, f"method: lora_cat\nmodels: [{a}, {other_base}]\noutput_dir: {tmp_path / 'x'}\n")
    assert main(["merge", str(path)]) == 2
    assert "trained on different base models" in capsys.readouterr().err
    path = _yaml(tmp_path, f"method: lora_cat\nmodels: [{a}, {three_models[0]}]\noutput_dir: {tmp_path / 'x'}\n")
    assert main(["merge", str(path)]) == 2
    assert "no adapter_config.json, but method lora_cat merges peft LoRA adapters" in capsys.readouterr().err


@pytest.fixture(scope="module")
def same_sign_pair(tmp_path_factory, three_models):
    """(base, a, b) where b's task vector is exactly twice a's: every element's delta agrees in sign."""
    base, a, _ = three_models
    d = tmp_path_factory.mktemp("double")
    wbase, wa = _weights(base), _weights(a)
    model = AutoModelForCausalLM.from_pretrained(a)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(wbase[name] + 2 * (wa[name] - wbase[name]))
    model.save_pretrained(d)
    for f in list(a.glob("tokenizer*")) + list(a.glob("chat_template*")):
        shutil.copy(f, d)
    return base, a, d


@pytest.mark.parametrize("method", ["ties", "dare_ties"])
def test_ties_and_dare_ties_with_full_density_are_the_normalized_sum_when_signs_agree(tmp_path, same_sign_pair, method):
    """density 1 keeps every element (DARE drops none and rescales by 1); all signs agree, so the merge is
    base + (0.5 da + 0.5 db) / (0.5 + 0.5) = base + 1.5 da."""
    base, a, b = same_sign_pair
    path = _yaml(
        tmp_path,
        f"""\
        method: {method}
        models: [{a}, {b}]
        base_model: {base}
        weights: [0.5, 0.5]
        density: 1.0
        output_dir: {tmp_path / method}
        """,
    )
    assert main(["merge", str(path)]) == 0
    wbase, wa, merged = _weights(base), _weights(a), _weights(tmp_path / method)
    for k in wa:
        torch.testing.assert_close(merged[k], wbase[k] + 1.5 * (wa[k] - wbase[k]), rtol=0, atol=1e-5)


def test_model_stock_moves_from_the_base_toward_the_average(tmp_path, three_models):
    """model_stock interpolates per tensor between the base and the average of the models:
    merged - base = t (average - base) with 0 <= t <= 1."""
    base, a, b = three_models
    path = _yaml(
        tmp_path, f"method: model_stock\nmodels: [{a}, {b}]\nbase_model: {base}\noutput_dir: {tmp_path / 'stock'}\n"
    )
    assert main(["merge", str(path)]) == 0
    wbase, wa, wb, merged = _weights(base), _weights(a), _weights(b), _weights(tmp_path / "stock")
    moved = 0
    for k in wa:
        toward, step = (wa[k] + wb[k]) / 2 - wbase[k], merged[k] - wbase[k]
        if toward.abs().max() < 1e-6:
            continue
        t = float((step * toward).sum() / (toward * toward).sum())
        assert -1e-4 <= t <= 1 + 1e-4, k
        torch.testing.assert_close(step, t * toward, rtol=0, atol=1e-4)
        moved += t > 1e-3
    assert moved > 0


def test_lora_svd_of_one_adapter_twice_is_that_adapter(tmp_path, adapters):
    path = _yaml(
        tmp_path,
        f"method: lora_svd\nmodels: [{adapters['a']}, {adapters['a']}]\nweights: [0.5, 0.5]\n"
        f"output_dir: {tmp_path / 'svd'}\n",
    )
    assert main(["merge", str(path)]) == 0
    da, merged = _deltas(adapters["a"]), _deltas(tmp_path / "svd")
    for k in da:
        torch.testing.assert_close(merged[k], da[k], rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", ["lora_linear", "lora_ties", "lora_dare_ties", "lora_dare_linear"])
def test_every_other_lora_method_writes_an_adapter_peft_loads(tmp_path, adapters, tiny_model_dir, method):
    from peft import PeftModel

    extra = "density: 0.5\n" if method != "lora_linear" else ""
    path = _yaml(
        tmp_path,
        f"method: {method}\nmodels: [{adapters['a']}, {adapters['b']}]\nweights: [0.5, 0.5]\n"
        f"{extra}output_dir: {tmp_path / method}\n",
    )
    assert main(["merge", str(path)]) == 0
    da, merged = _deltas(adapters["a"]), _deltas(tmp_path / method)
    assert set(merged) == set(da)
    for k in da:
        assert merged[k].shape == da[k].shape and torch.isfinite(merged[k]).all() and merged[k].abs().sum() > 0
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / method)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.isfinite().all()


def test_linear_weights_must_make_an_average_unless_normalized(tmp_path, three_models):
    a, b, _ = three_models
    body = f"method: linear\nmodels: [{a}, {b}]\noutput_dir: {tmp_path / 'out'}\n"
    with pytest.raises(ConfigError, match="weights sum to 1.5: linear adds the models .* normalize: true"):
        load_merge_recipe(_yaml(tmp_path, body + "weights: [1.0, 0.5]\n"))
    with pytest.raises(ConfigError, match="normalize is for method linear"):
        load_merge_recipe(
            _yaml(tmp_path, body.replace("linear", "task_arithmetic") + f"base_model: {a}\nnormalize: true\n")
        )
    assert main(["merge", str(_yaml(tmp_path, body + "weights: [1.0, 0.5]\nnormalize: true\n"))]) == 0
    wa, wb, merged = _weights(a), _weights(b), _weights(tmp_path / "out")
    for k in wa:
        torch.testing.assert_close(merged[k], (2 * wa[k] + wb[k]) / 3, rtol=0, atol=1e-6)


def test_leave_one_out_averages_for_linear_and_keeps_task_vector_weights(tmp_path, three_models, tiny_model_dir):
    from alfa.train.merge import merge_jobs

    a, b, c = (str(m) for m in three_models)
    ta = load_merge_recipe(_yaml(tmp_path, f"""\
        method: task_arithmetic
        models: [{a}, {b}, {c}]
        base_model: {tiny_model_dir}
        weights: [0.5, 0.3, 0.2]
        output_dir: {tmp_path / "ta"}
        leave_one_out: true
        """))  # fmt: skip
    assert [w for _, _, w in merge_jobs(ta)] == [[0.5, 0.3, 0.2], [0.3, 0.2], [0.5, 0.2], [0.5, 0.3]]
    uniform = load_merge_recipe(_yaml(tmp_path, f"method: ties\nmodels: [{a}, {b}, {c}]\nbase_model: {a}\n"
                                      f"output_dir: {tmp_path / 'x'}\nleave_one_out: true\n"))  # fmt: skip
    assert [w for _, _, w in merge_jobs(uniform)][1] == pytest.approx([1 / 3, 1 / 3])  # each vector's scale kept
    linear = load_merge_recipe(_yaml(tmp_path, f"method: linear\nmodels: [{a}, {b}, {c}]\nweights: [0.5, 0.3, 0.2]\n"
                                     f"output_dir: {tmp_path / 'y'}\nleave_one_out: true\n"))  # fmt: skip
    assert [w for _, _, w in merge_jobs(linear)][1] == pytest.approx([0.6, 0.4])  # the average of the rest


def test_a_merge_of_local_folders_by_relative_paths_stays_offline(tmp_path, three_models, monkeypatch):
    """The issue's reproduction: relative paths looked like Hub repo ids to mergekit, which then called the Hub
    (OfflineModeIsEnabled). They are resolved first; HF_HUB_OFFLINE=1 holds for the whole test session."""
    a, b, _ = three_models
    for m in (a, b):
        shutil.copytree(m, tmp_path / "runs" / m.name)
    monkeypatch.chdir(tmp_path)
    path = _yaml(tmp_path, f"method: linear\nmodels: [runs/{a.name}, runs/{b.name}]\noutput_dir: runs/merged\n")
    assert main(["merge", str(path)]) == 0
    merged, wa, wb = _weights(tmp_path / "runs" / "merged"), _weights(a), _weights(b)
    for k in wa:
        torch.testing.assert_close(merged[k], (wa[k] + wb[k]) / 2, rtol=0, atol=1e-6)
