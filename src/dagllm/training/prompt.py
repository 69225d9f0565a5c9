"""The one Korean prompt wrapper used for training, evaluation of validation loss, and serving.

    ### 지시:
    {instruction}

    ### 입력:            (only when the record has an input)
    {input}

    ### 응답:
    {output}<eos>

Loss is taken on the response (``output`` plus the end-of-text token) only.
"""

from __future__ import annotations

INSTRUCTION_HEADER = "### 지시:\n"
INPUT_HEADER = "\n\n### 입력:\n"
RESPONSE_HEADER = "\n\n### 응답:\n"


def build_prompt(instruction: str, input_text: str = "") -> str:
    """Everything before the response: the part that carries no loss."""
    prompt = INSTRUCTION_HEADER + instruction.strip()
    if input_text and input_text.strip():
        prompt += INPUT_HEADER + input_text.strip()
    return prompt + RESPONSE_HEADER
