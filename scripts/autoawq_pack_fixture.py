#!/usr/bin/env python3
"""An AWQ layer packed the way AutoAWQ packs it, as a fixture for tests/awq_kernels.rs.

The packing below follows `WQLinear_GEMM.from_linear` in casper-hansen/AutoAWQ,
awq/modules/linear/gemm.py (read at commit d9dc8e564fed1527be2a9d8d5c74daf3823c3203): the integer
weights come from `round((W + zeros * scales) / scales)` with fp16 scales, and each packed column takes
8 logical columns through its `order_map = [0, 2, 4, 6, 1, 3, 5, 7]`, logical column
`col * pack_num + order_map[i]` shifted left by `i * w_bit`; qzeros are packed by the same loop. It is
written here from that code, not from our Rust (src/model/awq.rs), so the test checks our reading of
the format against AutoAWQ's own writer. Pure Python (no torch or numpy needed): the loops are the
same, element by element.

Writes tests/fixtures/autoawq-pack/model.safetensors with `l.qweight`, `l.qzeros`, `l.scales` (the
layer) and `expected.intweight` [in, out], `expected.zeros` [in / group, out] (the ints before packing,
as I32).

    python3 scripts/autoawq_pack_fixture.py
"""
import json
import pathlib
import random
import struct

IN_FEATURES, OUT_FEATURES, GROUP_SIZE, W_BIT = 128, 64, 32, 4  # from_linear packs out // 32 * 4 columns: out % 32 == 0
OUT = pathlib.Path(__file__).resolve().parents[1] / "tests/fixtures/autoawq-pack"


def half(x):
    """x rounded to fp16, as `scales.clone().half()` stores it."""
    return struct.unpack("<e", struct.pack("<e", x))[0]


def from_linear(weight, scales, zeros, group_size):
    """WQLinear_GEMM.from_linear for w_bit 4: weight [out][in] float, scales and zeros [in/group][out]."""
    out_features, in_features = len(weight), len(weight[0])
    scale_zeros = [[z * s for z, s in zip(zr, sr)] for zr, sr in zip(zeros, scales)]
    scales = [[half(s) for s in row] for row in scales]
    pack_num = 32 // W_BIT
    # intweight[idx] = round((weight[:, idx] + scale_zeros[idx // group]) / scales[idx // group]),
    # then transposed: [in][out]. Python's round, like torch.round, rounds half to even.
    intweight = [
        [
            round((weight[n][idx] + scale_zeros[idx // group_size][n]) / scales[idx // group_size][n])
            for n in range(out_features)
        ]
        for idx in range(in_features)
    ]

    def pack(ints):
        packed = [[0] * (len(ints[0]) // 32 * W_BIT) for _ in ints]
        for col in range(len(ints[0]) // pack_num):
            order_map = [0, 2, 4, 6, 1, 3, 5, 7]
            for i in range(pack_num):
                for row in range(len(ints)):
                    packed[row][col] |= ints[row][col * pack_num + order_map[i]] << (i * W_BIT)
        return packed

    return pack(intweight), pack(zeros), scales, intweight


def main():
    rng = random.Random(20240607)
    groups = IN_FEATURES // GROUP_SIZE
    ints = [[rng.randrange(16) for _ in range(OUT_FEATURES)] for _ in range(IN_FEATURES)]
    zeros = [[rng.randrange(16) for _ in range(OUT_FEATURES)] for _ in range(groups)]
    scales = [[half(rng.uniform(0.001, 0.05)) for _ in range(OUT_FEATURES)] for _ in range(groups)]
    # The float weight these ints quantize exactly: from_linear must give them back.
    weight = [
        [(ints[k][n] - zeros[k // GROUP_SIZE][n]) * scales[k // GROUP_SIZE][n] for k in range(IN_FEATURES)]
        for n in range(OUT_FEATURES)
    ]
    qweight, qzeros, packed_scales, intweight = from_linear(weight, scales, zeros, GROUP_SIZE)
    assert intweight == ints, "from_linear's rounding must recover the ints"

    def i32(rows):
        return b"".join(struct.pack("<I", v & 0xFFFFFFFF) for row in rows for v in row)

    def f16(rows):
        return b"".join(struct.pack("<e", v) for row in rows for v in row)

    tensors = [
        ("l.qweight", "I32", [IN_FEATURES, OUT_FEATURES // 8], i32(qweight)),
        ("l.qzeros", "I32", [groups, OUT_FEATURES // 8], i32(qzeros)),
        ("l.scales", "F16", [groups, OUT_FEATURES], f16(packed_scales)),
        ("expected.intweight", "I32", [IN_FEATURES, OUT_FEATURES], i32(intweight)),
        ("expected.zeros", "I32", [groups, OUT_FEATURES], i32(zeros)),
    ]
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header = json.dumps(header, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)
    print(f"wrote {OUT / 'model.safetensors'}")


if __name__ == "__main__":
    main()
