"""Training chat templates: the loss on the model's own turns only.

Dialogue SFT (STaR-GATE's kept conversations, SML's successful dialogues) trains on the assistant's turns and
never on what the user, patient or teacher said. TRL's `assistant_only_loss` finds those tokens through
`{% generation %}` markers in the chat template; TRL ships marked copies for some model families, but not for
ChatML templates such as SmolLM2's or alfa's tiny model's. `training_chat_template` gives a marked template
that renders every conversation exactly as the model's own template does (checked on probe conversations, so a
template it does not reproduce is refused, never silently replaced); the end-of-turn token `<|im_end|>` is
inside the marked span, so the model also learns to stop.
"""

from __future__ import annotations

from trl.chat_template_utils import has_generation_markers

# ChatML with the assistant's content and its end-of-turn token marked; DEFAULT_SYSTEM is filled in with the
# system turn the model's own template adds when a conversation has none (SmolLM2: "You are a helpful AI
# assistant named SmolLM, ..."), or left out when it adds none.
CHATML_TRAINING = (
    "{% for m in messages %}"
    "{% if loop.first and m['role'] != 'system' %}DEFAULT_SYSTEM{% endif %}"
    "{% if m['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
PROBES = (
    [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}],
    [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
        {"role": "assistant", "content": "a2"},
    ],
)


def _render(tokenizer, template: str, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt
    )


def chatml_training_template(tokenizer) -> str | None:
    """The marked ChatML template reproducing the tokenizer's own, or None when its template is not ChatML."""
    own = tokenizer.chat_template
    if not own or "<|im_start|>" not in own:
        return None
    # the system turn the model's template adds to a conversation without one: what precedes the first user turn
    lone_user = _render(tokenizer, own, [{"role": "user", "content": "u"}], False)
    default_system = lone_user[: lone_user.index("<|im_start|>user")]
    literal = "{{ " + repr(default_system) + " }}" if default_system else ""
    template = CHATML_TRAINING.replace("DEFAULT_SYSTEM", literal)
    for probe in PROBES:
        for generation_prompt in (False, True):
            if _render(tokenizer, template, probe, generation_prompt) != _render(
                tokenizer, own, probe, generation_prompt
            ):
                return None
    return template


def training_chat_template(tokenizer, model_path: str) -> str | None:
    """The template to train a dialogue SFT run with: None where the tokenizer's own already has generation
    markers; alfa's marked ChatML where the model's template is ChatML; else None for TRL to patch (it knows
    Qwen, Llama 3, Gemma, Phi and others) or to refuse with its own message."""
    if tokenizer.chat_template is None:
        raise ValueError(
            f"{model_path}: the tokenizer has no chat template, so dialogue SFT cannot tell the model's turns from "
            "the partner's; use an instruct/chat model"
        )
    if has_generation_markers(tokenizer.chat_template):
        return None
    return chatml_training_template(tokenizer)


def assistant_token_mask(tokenizer, messages: list[dict], template: str) -> tuple[list[int], list[int]]:
    """(input ids, 1 on the assistant's tokens and 0 elsewhere) as TRL's assistant_only_loss computes them."""
    out = tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return list(out["input_ids"]), list(out["assistant_masks"])
