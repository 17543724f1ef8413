#!/usr/bin/env python3
"""Independent implementation of docs/PROTOCOL.md, checked against the test vectors.

Written from the document alone (not from the Rust code), so it fails when the document
and the implementation drift apart. Needs: blake3, cryptography (pip).
Usage: python3 tests/spec/check_vectors.py [docs/protocol-test-vectors.json]
"""
import json
import struct
import sys
from pathlib import Path

import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
SMALL_ORDER_Y = {
    1,
    P - 1,
    0,
    0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826,
    0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7,
}


def derive_key(context: str, material: bytes) -> bytes:
    return blake3.blake3(material, derive_key_context=context).digest()


def u32(x):
    return struct.pack("<I", x)


def u64(x):
    return struct.pack("<Q", x)


def text(s: str) -> bytes:
    b = s.encode("ascii")
    assert 1 <= len(b) <= 64 and all(0x21 <= c <= 0x7E for c in b), s
    return bytes([len(b)]) + b


def cert_body(c) -> bytes:
    return (b"\x01" + text(c["issuer_key_id"]) + text(c["wallet_id"])
            + bytes.fromhex(c["device_key"]) + c["currency"].encode("ascii")
            + bytes.fromhex(c["token_root"]) + u32(c["token_count"]) + u64(c["total_value"])
            + u64(c["issued_at_ms"]) + u64(c["spend_until_ms"]) + u64(c["settle_until_ms"]))


def cert_id(c) -> bytes:
    return derive_key("spentledger v1 certificate id", cert_body(c))


def payment_body(p) -> bytes:
    out = b"\x01" + cert_id(p["certificate"]) + u32(len(p["inputs"]))
    for i in p["inputs"]:
        out += u32(i["index"]) + u64(i["value"])
    return (out + u64(p["amount"]) + text(p["payee_id"]) + bytes.fromhex(p["payee_challenge"])
            + u64(p["counter"]) + u64(p["created_at_ms"]))


def tx_id(p) -> bytes:
    return derive_key("spentledger v1 payment id", payment_body(p))


CERT_PREFIX = b"spentledger/v1/certificate-signature\x00"
PAY_PREFIX = b"spentledger/v1/payment-signature\x00"


def leaf_hash(index, value):
    return derive_key("spentledger v1 merkle leaf", u32(index) + u64(value))


def node_hash(left, right):
    return derive_key("spentledger v1 merkle node", left + right)


def merkle_root(leaves):
    level = [leaf_hash(i, v) for i, v in leaves]
    while len(level) > 1:
        level = [node_hash(level[k], level[k + 1]) if k + 1 < len(level) else level[k]
                 for k in range(0, len(level), 2)]
    return level[0]


def verify_path(root, count, index, value, path):
    if not (1 <= count <= 65536 and index < count and len(path) <= 16):
        return False
    h, pos, width, i = leaf_hash(index, value), index, count, 0
    while width > 1:
        if pos % 2 == 1:
            if i >= len(path):
                return False
            h, i = node_hash(path[i], h), i + 1
        elif pos + 1 < width:
            if i >= len(path):
                return False
            h, i = node_hash(h, path[i]), i + 1
        pos, width = pos // 2, (width + 1) // 2
    return i == len(path) and h == root


def y_of(enc: bytes) -> int:
    return int.from_bytes(enc, "little") & ((1 << 255) - 1)


def point_encoding_ok(enc: bytes) -> bool:
    return y_of(enc) < P and y_of(enc) not in SMALL_ORDER_Y


def verify(pub: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


def validate(p, keys, stamp, skew):
    """The rules of PROTOCOL.md section 8, in order; returns None or the reason name."""
    c = p["certificate"]
    if not p["inputs"]:
        return "NO_INPUTS"
    if len(p["inputs"]) > 64:
        return "TOO_MANY_INPUTS"
    if not (1 <= c["token_count"] <= 65536 and c["total_value"] > 0
            and c["issued_at_ms"] <= c["spend_until_ms"] <= c["settle_until_ms"]):
        return "BAD_CERTIFICATE"
    key = keys.get(c["issuer_key_id"])
    if key is None:
        return "UNKNOWN_ISSUER_KEY"
    if not key["valid_from_ms"] <= c["issued_at_ms"] <= key["valid_until_ms"]:
        return "ISSUER_KEY_NOT_VALID"
    created = p["created_at_ms"]
    if created + skew < c["issued_at_ms"]:
        return "CREATED_BEFORE_ISSUANCE"
    if created > c["spend_until_ms"] + skew:
        return "CREATED_AFTER_SPEND_UNTIL"
    if created > stamp + skew:
        return "CREATED_IN_FUTURE"
    if stamp > c["settle_until_ms"]:
        return "SETTLEMENT_WINDOW_CLOSED"
    total, previous = 0, None
    for i in p["inputs"]:
        if i["index"] >= c["token_count"]:
            return "INDEX_OUT_OF_RANGE"
        if previous is not None and i["index"] == previous:
            return "DUPLICATE_INPUT"
        if previous is not None and i["index"] < previous:
            return "INPUTS_NOT_SORTED"
        previous = i["index"]
        if i["value"] == 0:
            return "ZERO_VALUE_INPUT"
        total += i["value"]
        if total >= 2**64:
            return "AMOUNT_OVERFLOW"
    if total != p["amount"]:
        return "AMOUNT_MISMATCH"
    if not verify(bytes.fromhex(key["public_key"]), CERT_PREFIX + cert_id(c),
                  bytes.fromhex(c["issuer_signature"])):
        return "BAD_ISSUER_SIGNATURE"
    device = bytes.fromhex(c["device_key"])
    # Torsion-freeness needs curve arithmetic; the vectors' weak key is of small order.
    if not point_encoding_ok(device):
        return "WEAK_DEVICE_KEY"
    root = bytes.fromhex(c["token_root"])
    for i in p["inputs"]:
        path = [bytes.fromhex(x) for x in i["path"]]
        if not verify_path(root, c["token_count"], i["index"], i["value"], path):
            return "BAD_MERKLE_PATH"
    sig = bytes.fromhex(p["device_signature"])
    if not point_encoding_ok(sig[:32]) or int.from_bytes(sig[32:], "little") >= L:
        return "NON_CANONICAL_SIGNATURE"
    if not verify(device, PAY_PREFIX + tx_id(p), sig):
        return "BAD_DEVICE_SIGNATURE"
    return None


def main():
    path = Path(sys.argv[1] if len(sys.argv) > 1 else
                Path(__file__).resolve().parents[2] / "docs" / "protocol-test-vectors.json")
    v = json.loads(path.read_text())
    passed, failed = 0, 0

    def check(name, ok):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {name}")

    for who in ("issuer", "device"):
        seed = bytes.fromhex(v[who]["secret_seed"])
        pub = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
        check(f"{who} public key", pub.hex() == v[who]["public_key"])
    check("signature prefixes", CERT_PREFIX.hex() == v["contexts"]["certificate_signature_prefix_hex"]
          and PAY_PREFIX.hex() == v["contexts"]["payment_signature_prefix_hex"])
    leaves = [(t["index"], t["value"]) for t in v["tokens"]]
    root = merkle_root(leaves)
    check("merkle root", root.hex() == v["merkle_root"])
    for t in v["tokens"]:
        check(f"leaf {t['index']} hash", leaf_hash(t["index"], t["value"]).hex() == t["leaf_hash"])
        path = [bytes.fromhex(x) for x in t["path"]]
        check(f"leaf {t['index']} path", verify_path(root, len(leaves), t["index"], t["value"], path))
    c = v["certificate"]["fields"]
    check("certificate body", cert_body(c).hex() == v["certificate"]["canonical_body"])
    check("cert_id", cert_id(c).hex() == v["certificate"]["cert_id"])
    check("certificate signing message",
          (CERT_PREFIX + cert_id(c)).hex() == v["certificate"]["signing_message"])
    issuer = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["issuer"]["secret_seed"]))
    check("issuer signature reproduces",
          issuer.sign(CERT_PREFIX + cert_id(c)).hex() == c["issuer_signature"])
    p = v["payment"]["fields"]
    check("payment body", payment_body(p).hex() == v["payment"]["canonical_body"])
    check("tx_id", tx_id(p).hex() == v["payment"]["tx_id"])
    check("payment signing message", (PAY_PREFIX + tx_id(p)).hex() == v["payment"]["signing_message"])
    device = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["device"]["secret_seed"]))
    check("device signature reproduces",
          device.sign(PAY_PREFIX + tx_id(p)).hex() == p["device_signature"])
    cid = cert_id(c)
    nullifiers = [derive_key("spentledger v1 token nullifier", cid + u32(i["index"])).hex()
                  for i in p["inputs"]]
    check("token nullifiers", nullifiers == v["payment"]["token_nullifiers"])
    check("counter nullifier", derive_key("spentledger v1 counter nullifier", cid + u64(p["counter"])).hex()
          == v["payment"]["counter_nullifier"])
    keys = {v["issuer"]["key_id"]: v["issuer"]}
    ctx = v["context"]
    check("valid payment is valid", validate(p, keys, ctx["stamp_ms"], ctx["skew_ms"]) is None)
    for case in v["invalid_payments"]:
        got = validate(case["payment"], keys, case["stamp_ms"], ctx["skew_ms"])
        check(f"invalid case {case['name']}: got {got}, want {case['expected_reason']}",
              got == case["expected_reason"])
    print(f"spec vectors: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
