"""
Who may write to the socket: agent.allowed_uids and agent.allowed_gids
(checked with SO_PEERCRED and SO_PEERGROUPS on accept; others are closed
with error not_allowed and counted), user and group names resolved at
start, and agent.tag_peer, which adds the producer's uid, gid and process
name to its events over whatever the producer claims. Producers run as
other users through setuid in a child process (the suite runs as root).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import AGENT_BIN, ROOT as ROOT_DIR, backend, connect, send_acked

import msgpack

NOBODY = 65534

PRODUCER = textwrap.dedent("""
    import json, socket, sys
    import msgpack
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    try:
        s.sendall(msgpack.packb({"event": "project:created", "chunk": "c1",
                                 "properties": {"$peer_uid": 0, "who": sys.argv[2]}}))
    except OSError:
        pass  # refused before it could send: the reply says why
    s.settimeout(5)
    unpacker = msgpack.Unpacker(raw=False)
    replies = []
    while not replies:  # the first reply: an ack, or the error before the close
        data = s.recv(4096)
        if not data:
            break
        unpacker.feed(data)
        replies = list(unpacker)
    print(json.dumps(replies))
""")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="NOT RUN: needs root to run "
                                "producers as other users")


def run_producer(agent, who, uid, gid, groups=()):
    """Send one event as uid/gid (with supplementary groups); the agent's
    first reply (an ack, or the error it closes the connection with)."""
    def become():
        os.setgroups(list(groups))
        os.setgid(gid)
        os.setuid(uid)
    out = subprocess.run([sys.executable, "-c", PRODUCER, agent.socket, who],
                         preexec_fn=become, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def reachable(agent):
    """Let other users reach the socket's directory (mkdtemp makes it 0700)."""
    os.chmod(os.path.dirname(os.path.dirname(agent.socket)), 0o755)


@needs_root
def test_only_allowed_users_and_groups_may_write(collector, make_agent):
    agent = make_agent({"backend": backend(collector),
                        "agent": {"socket_mode": "0666", "allowed_uids": "root",
                                  "allowed_gids": "4242, 4343"},
                        "batch": {"max_age_ms": "50"}})
    reachable(agent)
    denied = run_producer(agent, "nobody", NOBODY, NOBODY)
    assert denied[-1]["error"] == "not_allowed"
    assert f"uid {NOBODY}, gid {NOBODY}" in denied[-1]["detail"]
    # a supplementary group is enough
    by_group = run_producer(agent, "member", NOBODY, NOBODY, groups=[4343])
    assert by_group == [{"ack": "c1"}], by_group
    with connect(agent) as s:  # root, by uid
        assert send_acked(s, msgpack.Unpacker(raw=False), {"event": "project:created"},
                          "root") == {"ack": "root"}
    collector.wait_for_events(2, timeout=10)
    assert agent.metric("connections_denied_total") == 1
    agent.stop()
    assert "is not in agent.allowed_uids or agent.allowed_gids" in agent.stderr
    assert agent.stats()["received"] == 2  # the denied one never got to send
    assert "configuration [agent]" in agent.stderr and "allowed_uids=0 " in agent.stderr
    assert "allowed_gids=4242,4343 " in agent.stderr


def test_unknown_user_names_stop_start_up(tmp_path):
    ini = tmp_path / "agent.ini"
    ini.write_text("[agent]\nallowed_uids = root, no-such-user-here\n[events]\nregistry =\n")
    out = subprocess.run([AGENT_BIN, "--check-config", "-c", str(ini)], capture_output=True,
                         text=True)
    assert out.returncode == 1
    assert ("[agent] allowed_uids = 'root, no-such-user-here': 'no-such-user-here' is no user "
            "here (allowed: user names or numbers, separated by commas or spaces)") in out.stderr


@needs_root
def test_tag_peer_says_who_sent_each_event(collector, make_agent):
    agent = make_agent({"backend": backend(collector),
                        "agent": {"socket_mode": "0666", "tag_peer": "true"},
                        "batch": {"max_age_ms": "50"}})
    reachable(agent)
    assert run_producer(agent, "nobody", NOBODY, 4242) == [{"ack": "c1"}]
    with connect(agent) as s:
        send_acked(s, msgpack.Unpacker(raw=False),
                   {"event": "project:created", "properties": {"who": "root",
                                                               "$peer_comm": "forged"}}, "r")
    events = {e["properties"]["who"]: e["properties"]
              for e in collector.wait_for_events(2, timeout=10)}
    agent.stop()
    assert events["nobody"]["$peer_uid"] == NOBODY  # not the 0 it claimed
    assert events["nobody"]["$peer_gid"] == 4242
    assert events["nobody"]["$peer_comm"] == os.path.basename(sys.executable)[:15]
    assert events["root"]["$peer_uid"] == 0 and events["root"]["$peer_gid"] == 0
    assert events["root"]["$peer_comm"] != "forged"


def bind_probe_env(**settings):
    """The agent's environment with bind_probe.c preloaded (its settings
    given), which the sanitizers' runtime lets come before it."""
    build = os.environ.get("TELEMETRY_BUILD_DIR", os.path.join(ROOT_DIR, "build"))
    return dict(settings,
                LD_PRELOAD=os.path.join(build, "tests", "integration", "libbind_probe.so"),
                ASAN_OPTIONS=(os.environ.get("ASAN_OPTIONS", "") +
                              ":verify_asan_link_order=0").lstrip(":"))


def test_the_socket_is_never_wider_than_its_mode(make_agent, tmp_path):
    # bound under a temporary name with no permissions at all, then made
    # listening, given its group and mode, and linked into place: there is
    # no moment when others could open it, and whoever finds the path can
    # connect at once
    probe = tmp_path / "binds.txt"
    agent = make_agent({"agent": {"socket_mode": "0660"}},
                       env=bind_probe_env(BIND_PROBE_OUT=str(probe)))
    mode_now = os.stat(agent.socket).st_mode & 0o7777
    agent.stop()
    lines = probe.read_text().splitlines()
    assert lines == [f"bind 0000 {agent.socket}~",
                     f"link 0660 listening {agent.socket}"], lines
    assert not os.path.exists(agent.socket + "~")
    assert mode_now == 0o660


def test_a_path_taken_while_starting_stops_start_up(make_agent, tmp_path):
    # another agent's socket appears at the path after the stale-socket
    # check and before this agent links its own there: it is left alone,
    # and this agent stops, saying why, with nothing of its own left behind
    agent = make_agent({}, start=False, env=bind_probe_env(BIND_PROBE_TAKE_PATH="1"))
    agent.start(wait=False)
    assert agent.proc.wait(timeout=60) != 0
    assert (f"[agent] socket = '{agent.socket}': another agent took the path while this one "
            "started") in agent.read_stderr()
    assert os.path.isfile(agent.socket)  # the other one's, untouched
    assert not os.path.exists(agent.socket + "~")
