"""
One set of protocol numbers and names: proto/wire.h (compiled by the agent
and the C client; client/status.c asserts telemetry.h's copies at compile
time), proto/PROTOCOL.md (what producers read) and the Python client must
say the same things.
"""
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def wire_defines():
    values = {}
    for name, value in re.findall(r"#define (WIRE_\w+) (.+)", read("proto", "wire.h")):
        value = re.sub(r"/\*.*?\*/", "", value).strip()
        values[name] = value
    return values


def c_number(text):
    text = re.sub(r"INT64_C\((\d+)\)", r"\1", text)
    return int(eval(text, {}))  # "(1024 * 1024)", "32", ...


def section(doc, number):
    m = re.search(rf"^## {number}\. .*?(?=^## \d+\. |\Z)", doc, re.M | re.S)
    assert m, f"PROTOCOL.md has no section {number}"
    return m.group(0)


def test_limits_agree():
    wire = wire_defines()
    doc = read("proto", "PROTOCOL.md")
    name_max = c_number(wire["WIRE_NAME_MAX"])
    assert c_number(wire["WIRE_DISTINCT_ID_MAX"]) == name_max
    native = section(doc, 3)
    assert re.search(rf"`event`\s*\|.*\|\s*yes\s*\|\s*1–{name_max} bytes", native)
    assert re.search(rf"`distinct_id`\s*\|.*\|\s*no\s*\|\s*1–{name_max} bytes", native)
    chunk_max = c_number(wire["WIRE_CHUNK_MAX"])
    assert re.search(rf"`chunk`\s*\|.*\|\s*1–{chunk_max} bytes", native)
    assert f"not a str of 1–{chunk_max} bytes" in section(doc, 8)
    depth = c_number(wire["WIRE_MAX_DEPTH"])
    assert f"nesting deeper than {depth} maps/arrays" in section(doc, 2)
    message = c_number(wire["WIRE_DEFAULT_MAX_MESSAGE_BYTES"])
    assert message == 1024 * 1024 and "default 1 MiB" in section(doc, 2)
    event = c_number(wire["WIRE_DEFAULT_MAX_EVENT_BYTES"])
    assert event == 32 * 1024 and "(default 32 KiB)" in native
    socket = wire["WIRE_DEFAULT_SOCKET"].strip('"')
    assert f"`{socket}`" in section(doc, 1)
    assert f"`{wire['WIRE_SOCKET_ENV'].strip(chr(34))}`" in section(doc, 1)
    assert c_number(wire["WIRE_TIMESTAMP_MAX_MS"]) == 253402300799999
    assert "from 1970 to\n9999-12-31" in section(doc, 4)


def test_rejection_reasons_agree():
    header = read("proto", "wire.h")
    reasons = re.findall(r'^\s+X\(\w+, "(\w+)"\)', header, re.M)
    assert len(reasons) >= 13
    table = section(read("proto", "PROTOCOL.md"), 8)
    documented = re.findall(r"^\| `(\w+)` \|", table, re.M)
    agent_only = {"buffer_full", "disabled"}  # the agent's own (agent/reason.c), also documented
    assert set(documented) == set(reasons) | agent_only
    reason_c = read("agent", "reason.c")
    for name in agent_only:
        assert f'"{name}"' in reason_c


def test_connection_errors_agree():
    wire = wire_defines()
    errors = {v.strip('"') for k, v in wire.items() if k.startswith("WIRE_ERROR_")}
    doc = read("proto", "PROTOCOL.md")
    table = section(doc, 2)
    rows = set(re.findall(r"\| `(\w+)`\s*\|\s*$", table, re.M)) - {"error"}  # - the heading
    assert rows == errors - {"max_connections", "not_allowed"}  # refusals on accept
    assert '"max_connections"' in section(doc, 1) and '"not_allowed"' in section(doc, 1)
    # what a message fault is, for the clients deciding to give an event up
    about_message = {"too_large", "too_deep", "not_msgpack"}
    python = read("client", "python", "telemetry_client.py")
    m = re.search(r"_MESSAGE_FAULTS = frozenset\(\((.*?)\)\)", python)
    assert set(re.findall(r'"(\w+)"', m.group(1))) == about_message
    conn = read("client", "conn.c")
    assert all(f"WIRE_ERROR_{e.upper()}" in conn for e in about_message)


def test_python_client_limits_agree():
    wire = wire_defines()
    python = read("client", "python", "telemetry_client.py")

    def py(name):
        return int(eval(re.search(rf"^{name} = ([^#\n]+)", python, re.M).group(1), {}))

    assert py("MAX_DEPTH") == c_number(wire["WIRE_MAX_DEPTH"])
    assert py("MAX_NAME_BYTES") == c_number(wire["WIRE_NAME_MAX"])
    assert py("MAX_MESSAGE_BYTES") == c_number(wire["WIRE_DEFAULT_MAX_MESSAGE_BYTES"])
    assert py("MAX_TIMESTAMP_MS") == c_number(wire["WIRE_TIMESTAMP_MAX_MS"])
    assert f'"{wire["WIRE_DEFAULT_SOCKET"].strip(chr(34))}"' in python


def test_telemetry_h_limits_are_asserted():
    status = read("client", "status.c")
    for name in ("TLM_NAME_MAX", "TLM_DISTINCT_ID_MAX", "TLM_MAX_DEPTH", "TLM_UUID_LEN",
                 "TLM_DEFAULT_MAX_EVENT_BYTES"):
        assert re.search(rf"_Static_assert\({name} == WIRE_", status), name
    header = read("client", "telemetry.h")
    wire = wire_defines()
    assert f'#define TLM_DEFAULT_SOCKET {wire["WIRE_DEFAULT_SOCKET"]}' in header
