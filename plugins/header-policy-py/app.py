"""header-policy, in Python: adds, copies and removes SIP headers on every call and can send every
call to a fixed target, all from config. The same config keys and decisions as plugins/header-policy
(the Rust original); tests/cases/header-policy.json holds the cases all languages must agree on.

The config is read with the `json` module, held to the rules of serde_json (which the Rust plugin
uses) where the two differ, so that every language accepts and refuses the same texts.
"""

import json
import math
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import hooks
from wit_world.imports import types

# Headers the gateway owns, full and compact forms (RFC 3261 7.3.3): never added or removed.
HOST_OWNED = {
    name.lower()
    for name in [
        "Via", "Call-ID", "CSeq", "From", "To", "Contact", "Route", "Record-Route",
        "Content-Length", "Content-Type", "Max-Forwards", "v", "i", "f", "t", "m", "l", "c",
    ]
}

# A SIP token (RFC 3261 25.1), ASCII only.
TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")

# What Rust's str::trim removes (Unicode White_Space): a config of only these counts as `{}`.
RUST_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"

# serde_json's limit: the 128th nested array or object is an error.
MAX_DEPTH = 128

ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class Refused(Exception):
    """A config this plugin will not run with; the message is for people."""


class Num(str):
    """A JSON number, kept as the text the Rust SDK gives it."""


def format_float(x):
    """A finite float as serde_json prints it: the shortest digits that read back the same, in plain
    notation with at least one fractional digit for decimal exponents -5..=15 (`100.0`, `0.00001`),
    else in scientific notation with a signed exponent (`1e+16`, `1.5e-7`)."""
    if x == 0:
        return "-0.0" if math.copysign(1, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    digits, exp = _shortest(abs(x))
    digits = digits.rstrip("0") or "0"
    if -5 <= exp <= 15:
        if exp < 0:
            return f"{sign}0.{'0' * (-exp - 1)}{digits}"
        whole = digits[: exp + 1].ljust(exp + 1, "0")
        return f"{sign}{whole}.{digits[exp + 1:] or '0'}"
    frac = f".{digits[1:]}" if len(digits) > 1 else ""
    return f"{sign}{digits[0]}{frac}e{'-' if exp < 0 else '+'}{abs(exp)}"


def _shortest(x):
    """The shortest round-trip digits of positive `x` (repr's) and its decimal exponent, so that
    x == 0.<digits> * 10 ** (exp + 1)."""
    text = repr(x)
    mantissa, _, exp_text = text.partition("e")
    exp = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # Position of the first significant digit relative to the decimal point.
    if whole.strip("0"):
        exp += len(whole.lstrip("0")) - 1
    else:
        exp -= len(frac) - len(frac.lstrip("0")) + 1
    return digits, exp


def parse_int(text):
    value = int(text)
    # serde_json keeps integers that fit u64 or i64; `-0` and larger ones become floats.
    if text == "-0" or not (-(2**63) <= value < 2**64):
        return parse_float(text)
    return Num(text)


def parse_float(text):
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return Num(format_float(value))


def parse_constant(name):
    raise ValueError(f"{name} is not JSON")


def check_text(text):
    """Raises ValueError for what serde_json refuses and `json` accepts: nesting past its limit, a
    lone surrogate escape (`\\ud800`; even in a value a repeated key replaces), and anything but
    ASCII outside strings (`json` may take Unicode digits for numbers)."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        i += 1
        if ch == '"':
            while i < n and text[i] != '"':
                if text[i] == "\\" and text[i + 1 : i + 2] == "u":
                    unit = hex4(text, i + 2)
                    i += 6
                    if 0xDC00 <= unit <= 0xDFFF:
                        raise ValueError("lone trailing surrogate in a \\u escape")
                    if 0xD800 <= unit <= 0xDBFF:
                        if text[i : i + 2] != "\\u" or not 0xDC00 <= hex4(text, i + 2) <= 0xDFFF:
                            raise ValueError("lone leading surrogate in a \\u escape")
                        i += 6
                elif text[i] == "\\":
                    i += 2
                else:
                    i += 1
            i += 1
        elif ch in "[{":
            depth += 1
            if depth >= MAX_DEPTH:
                raise ValueError("recursion limit exceeded")
        elif ch in "]}":
            depth -= 1
        elif ord(ch) > 0x7F:
            raise ValueError("unexpected character")


def hex4(text, i):
    """The code unit of the `\\uXXXX` escape whose digits start at `i`; -1 if they are not hex
    (`json` then refuses the escape itself)."""
    digits = text[i : i + 4]
    if len(digits) == 4 and all(c in "0123456789abcdefABCDEF" for c in digits):
        return int(digits, 16)
    return -1


def parse_config(text):
    if text.strip(RUST_WHITESPACE) == "":
        return {}
    try:
        check_text(text)
        root = json.loads(
            text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant
        )
    except (ValueError, RecursionError) as e:
        raise Refused(f"config is not valid JSON: {e}") from None
    if not isinstance(root, dict):
        raise Refused(f"config must be a table, found {kind(root)}")
    return root


def kind(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, Num):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    return "a table"


def scalar_text(v):
    """Text of a scalar as the Rust SDK gives it (strings unquoted), or None for anything else."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return str(v)
    return None


def check_header_name(key, name):
    if not TOKEN.fullmatch(name):
        raise Refused(f"header-policy: `{key}`: `{name}` is not a valid SIP header name")
    if name.lower() in HOST_OWNED:
        raise Refused(
            f"header-policy: `{key}`: `{name}` is a header the gateway owns; plugins cannot set or remove it"
        )


def headers(config, key):
    table = config.get(key)
    if table is None:
        return []
    if not isinstance(table, dict):
        raise Refused(f"config `{key}`: expected a table, found {kind(table)}")
    pairs = []
    for name, value in table.items():
        text = scalar_text(value)
        if text is None:
            raise Refused(f"config `{key}.{name}`: expected a string, found {kind(value)}")
        pairs.append((name, text))
    for name, text in pairs:
        check_header_name(key, name)
        if any(c in text for c in "\r\n\0"):
            raise Refused(f"header-policy: `{key}`: header `{name}`: the value contains CR, LF or NUL")
    return [types.Header(name=name, value=text) for name, text in pairs]


def names(config, key):
    items = config.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise Refused(f"config `{key}`: expected a list, found {kind(items)}")
    texts = []
    for i, value in enumerate(items):
        text = scalar_text(value)
        if text is None:
            raise Refused(f"config `{key}.{i}`: expected a string, found {kind(value)}")
        texts.append(text)
    for name in texts:
        check_header_name(key, name)
    return texts


def is_sip_uri(uri):
    return (uri[:4].translate(ASCII_LOWER) == "sip:" and len(uri) > 4) or (
        uri[:5].translate(ASCII_LOWER) == "sips:" and len(uri) > 5
    )


def target(config):
    uri = config.get("target")
    if uri is None:
        return None
    if isinstance(uri, Num) or not isinstance(uri, str):
        raise Refused(f"config `target`: expected a string, found {kind(uri)}")
    if not is_sip_uri(uri):
        raise Refused(f'header-policy: `target` "{uri}" is not a sip: or sips: URI')
    return str(uri)


def build(text):
    config = parse_config(text)
    return hooks.Forward(
        invite_headers=headers(config, "invite-headers"),
        response_headers=headers(config, "response-headers"),
        pass_through=names(config, "pass-through"),
        remove_headers=names(config, "remove-headers"),
        target=target(config),
        media=None,
    )


# The decision, the same for every call: built by `init`, handed out by `on_invite`. Module state,
# because the runtime may create a new `Hooks` object for each call into the component.
DECISION = None


class Hooks(exports.Hooks):
    def init(self, config):
        global DECISION
        try:
            DECISION = build(config)
        except Refused as e:
            raise Err(str(e)) from None
        return hooks.PluginInfo(hooks=hooks.HookSet.INVITE)

    def on_invite(self, call, request):
        return hooks.InviteDecision_Forward(DECISION)

    # Never called (init asks for on-invite only), but every export must exist: "no opinion".

    def on_response(self, call, leg, method, response):
        return types.HeaderEdits(add=[], remove=[])

    def on_refer(self, call, leg, transfer):
        return hooks.ReferDecision_NoOpinion()

    def recording_policy(self, call):
        return hooks.RecordingDecision_None_()

    def on_media_state(self, call, leg, change):
        pass

    def on_dtmf(self, call, leg, digit):
        pass

    def on_call_end(self, call, summary):
        pass
