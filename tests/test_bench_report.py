"""The benchmark page's description of the CPU (tools/bench/report.py)."""

from __future__ import annotations

from tools.bench.report import cpu_description

_TWO_PROCESSORS = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 aes pclmulqdq avx2 vaes vpclmulqdq

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: Other
flags\t\t: fpu aes avx512f
"""


def test_the_first_processor_with_family_model_and_aes_instructions() -> None:
    assert cpu_description(_TWO_PROCESSORS) == (
        "AMD EPYC (family 25, model 1; AES-NI, VAES, no AVX-512)"
    )


def test_every_flag_present() -> None:
    text = "model name : X\ncpu family : 6\nmodel : 143\nflags : aes vaes avx512f\n"
    assert cpu_description(text) == "X (family 6, model 143; AES-NI, VAES, AVX-512)"


def test_what_is_missing_is_left_out() -> None:
    assert cpu_description("model name : Only a name\n") == "Only a name"
    assert cpu_description("") == "unknown CPU"
    assert cpu_description("flags : sse2\n") == "unknown CPU (no AES-NI, no VAES, no AVX-512)"
