#!/usr/bin/python3
"""
bench.py: the telemetry-agent benchmark driver (bench/README.md).

Runs every scenario against the real agent with bench-sink as its backend
and bench-loadgen as its producers, each one --repeat times, and writes to
--out: report.md (the tables, also printed at the end), report.json (every
figure of every repetition, the machine, the commit), throughput.png and
latency.png (gnuplot). A run whose sink did not count exactly the events
sent, or whose agent did not exit 0, is a failed run: reported, never
averaged, and the exit status is 1. --smoke runs every kind of scenario
once, tiny, and also fails when a figure is missing.

    /usr/bin/python3 bench/bench.py [--smoke] [--build DIR] [--out DIR] [--repeat K]
        [--events N] [--fluent-bit PATH] [--callgrind] [--only KIND,...]

Standard library only (Debian's python3).
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from report import cpu_key, machine_info, write_reports  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_PAYLOADS = os.path.join(ROOT, "tests", "integration", "orchest-payloads.ndjson")
EVENTS_FILE = os.path.join(ROOT, "proto", "events.txt")
KINDS = ("cpu", "privacy", "floor", "latency", "outage", "producer", "fluentbit", "callgrind")
TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


class Failure(Exception):
    """A run that did not work: reported loudly, never averaged."""


# ---------------------------------------------------------------- the plan

def make_plan(smoke, events):
    """What each kind of scenario runs, full or smoke."""
    if smoke:
        cpu = [("native", 1, True, False), ("native", 4, True, False),
               ("forward", 1, True, False), ("forward", 4, True, False),
               ("native", 4, False, False), ("forward", 4, True, True)]
        return dict(events=events or 20000, cpu=cpu, latency={1000: 1.0, 20000: 0.5},
                    outage_rate=5000, outage_seconds=2, producer_c=(5000, 1),
                    producer_py=(1000, 1), compress_ms=100, idle_wait=0.3,
                    fluentbit_connections=(4,), callgrind_events=(500, 1500))
    cpu = [(fmt, conns, gzip, False) for gzip in (True, False) for fmt in ("native", "forward")
           for conns in (1, 4, 16, 256)]
    # The spool's cost is in writing batches, whatever the number of producers:
    # measured at 1 and 16 connections, to keep the suite to minutes.
    cpu += [(fmt, conns, True, True) for fmt in ("native", "forward") for conns in (1, 16)]
    # Many producers: throughput must not collapse at a thousand connections.
    cpu += [("native", 1000, True, False)]
    return dict(events=events or 1000000, cpu=cpu, latency={1000: 10.0, 50000: 5.0},
                outage_rate=50000, outage_seconds=30, producer_c=(20000, 3),
                producer_py=(5000, 3), compress_ms=1000, idle_wait=0.5,
                fluentbit_connections=(1, 4, 16, 256), callgrind_events=(5000, 15000))


# ---------------------------------------------------------------- processes

def read_proc_stat_cpu_ns(pid):
    """user + system CPU of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_NS


def read_proc_memory_mib(pid):
    """VmRSS, RssAnon and VmHWM of a process, in MiB."""
    memory = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "VmHWM"):
                memory[key] = int(value.split()[0]) / 1024
    return memory


def run_json(cmd, timeout, what):
    """Run a tool to its end and parse the JSON line it printed last."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"{what} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise Failure(f"{what} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return parse_last_json(done.stdout, what)


def parse_last_json(text, what):
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        raise Failure(f"{what} printed no JSON line: {text[-500:]!r}") from None


def stop_process(proc, timeout=30):
    """SIGTERM, then wait; kill if it does not exit. Returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise Failure(f"pid {proc.pid} did not exit within {timeout} s of SIGTERM") from None


class Sink:
    """bench-sink, one for the whole suite, reset before each run."""

    def __init__(self, binary, log_path):
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([binary, "--port", "0"], stdout=subprocess.PIPE,
                                     stderr=self.log)
        line = self.proc.stdout.readline()
        try:
            self.port = json.loads(line)["port"]
        except (ValueError, KeyError):
            self.proc.kill()
            raise Failure(f"bench-sink did not say its port (exit {self.proc.wait()})") from None
        self.url = f"http://127.0.0.1:{self.port}"

    def request(self, method, path):
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST"
                                     else None)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.read()
        except (urllib.error.URLError, OSError) as e:
            raise Failure(f"bench-sink {method} {path}: {e}") from None

    def stats(self):
        return json.loads(self.request("GET", "/stats"))

    def reset(self):
        self.request("POST", "/reset")

    def outage(self, on):
        self.request("POST", f"/outage?on={1 if on else 0}")

    def sample(self):
        return self.request("GET", "/sample")

    def wait_for(self, events, timeout, poll=0.05):
        """Until the sink counted `events`; more is a failure, as is the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.stats()
            if st["events"] > events:
                raise Failure(f"the sink counted {st['events']} events, {events} were sent")
            if st["events"] == events:
                return st
            if time.monotonic() > deadline:
                raise Failure(f"the sink counted {st['events']} of {events} events "
                              f"within {timeout:.0f} s")
            time.sleep(poll)

    def stop(self):
        status = stop_process(self.proc)
        self.log.close()
        if status != 0:
            raise Failure(f"bench-sink exited {status}")


class Agent:
    """One telemetry-agent with its own directory, config, socket and log."""

    def __init__(self, bench, sink, gzip=True, spool=False, backend=None, wrapper=(),
                 privacy=True):
        self.bench = bench
        self.dir = tempfile.mkdtemp(prefix="agent-", dir=bench.tmp)
        self.socket = os.path.join(self.dir, "agent.sock")
        self.log_path = os.path.join(self.dir, "agent.log")
        sections = {
            # info, not warn: the start line says when the agent listens, and
            # the "stopped:" line at exit gives its own counters; nothing is
            # logged per event or per batch at this level
            "agent": {"socket": self.socket, "log_level": "info", "shutdown_grace_ms": 10000},
            "events": {"registry": EVENTS_FILE},
            "backend": {"url": f"{sink.url}/batch", "api_key": "phc_bench",
                        "gzip": "true" if gzip else "false", **(backend or {})},
            "http": {"listen": "127.0.0.1:0"},
            "relay": {"listen": ""},
        }
        if spool:
            sections["spool"] = {"dir": os.path.join(self.dir, "spool"), "fsync": "interval"}
        if not privacy:  # no [privacy] rules at all (the defaults drop and redact)
            sections["privacy"] = {"drop_keys": "", "redact_values": ""}
        self.config = os.path.join(self.dir, "agent.ini")
        with open(self.config, "w") as f:
            for name, keys in sections.items():
                f.write(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
        self.wrapper = list(wrapper)
        self.proc = None
        self.log = None

    def start(self, timeout=30):
        self.log = open(self.log_path, "wb")
        # The agent reads TELEMETRY_AGENT_* from the environment: none leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_AGENT_")}
        self.proc = subprocess.Popen([*self.wrapper, self.bench.agent_bin, "-c", self.config],
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        deadline = time.monotonic() + timeout
        while "listening on" not in self.read_log():
            if self.proc.poll() is not None:
                raise Failure(f"the agent exited {self.proc.returncode} at start:\n"
                              + self.read_log()[-2000:])
            if time.monotonic() > deadline:
                raise Failure("the agent did not start listening:\n" + self.read_log()[-2000:])
            time.sleep(0.02)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def read_log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def cpu_ns(self):
        return read_proc_stat_cpu_ns(self.pid)

    def memory(self):
        return read_proc_memory_mib(self.pid)

    def stop(self):
        """SIGTERM; the agent must exit 0. Its counters from the "stopped:" line."""
        status = stop_process(self.proc, timeout=60)
        self.log.close()
        text = self.read_log()
        if status != 0:
            raise Failure(f"the agent exited {status}:\n{text[-2000:]}")
        m = re.search(r"stopped: (.*)", text)
        if not m:
            raise Failure("no 'stopped:' line in the agent's log:\n" + text[-2000:])
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}

    def poll(self):
        return None if self.proc is None else self.proc.poll()

    def diagnosis(self):
        """After a failed run: stop the agent if it still runs and return the
        end of its log (its "stopped:" counters say where events went)."""
        if self.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        lines = self.read_log().splitlines()
        return "\n".join(lines[-6:])

    def wait(self):
        return None if self.proc is None else self.proc.wait()

    def kill(self):
        if self.poll() is None and self.proc is not None:
            self.proc.kill()  # a stopped (SIGSTOP) process is killed too
            self.proc.wait()
        if self.log is not None:
            self.log.close()


def check_agent_counters(counters, sent):
    """The agent's own account must agree: all received, all delivered."""
    received, delivered = counters.get("received"), counters.get("delivered")
    if received != sent or delivered != sent or counters.get("dropped", 0) != 0:
        raise Failure(f"the agent received {received}, delivered {delivered} and dropped "
                      f"{counters.get('dropped')} of {sent} events")


def cmake_cache_says(build, line):
    """Whether build's CMakeCache.txt holds this exact line."""
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            return any(l.strip() == line for l in f)
    except OSError:
        return False


# ---------------------------------------------------------------- the harness

class Bench:
    def __init__(self, args):
        self.args = args
        self.plan = make_plan(args.smoke, args.events)
        self.build = os.path.abspath(args.build)
        self.agent_bin = os.path.join(self.build, "telemetry-agent")
        self.tool = {name: os.path.join(self.build, "bench", f"bench-{name}")
                     for name in ("loadgen", "sink", "floor", "producer")}
        for path in (self.agent_bin, *self.tool.values()):
            if not os.access(path, os.X_OK):
                sys.exit(f"bench.py: {path} is missing: build first (bench/run does), "
                         "or give --build")
        # The Python client's C encoder, if built: not in a sanitized build,
        # whose python3 would need the sanitizers' runtime preloaded.
        python_dir = os.path.join(self.build, "python")
        self.python_encoder_dir = python_dir if os.path.isdir(python_dir) and any(
            n.startswith("_telemetry_speedups") for n in os.listdir(python_dir)) and not \
            cmake_cache_says(self.build, "TELEMETRY_SANITIZE:BOOL=ON") else None
        if not os.path.isfile(args.payloads):
            sys.exit(f"bench.py: no payload file {args.payloads}")
        self.out = os.path.abspath(args.out)
        os.makedirs(os.path.join(self.out, "logs"), exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="bench-")
        self.machine = machine_info()  # the date and commit the suite started at
        self.scenarios = {}  # key -> {"kind", "params", "runs": [...]}
        self.notes = []      # lines for the report: skipped parts and why
        self.sink = None
        self.processes = []  # started in the background, killed on the way out

    # -- running --------------------------------------------------------

    def scenario(self, key, kind, **params):
        return self.scenarios.setdefault(key, {"kind": kind, "params": params, "runs": []})

    def repeat(self, key, kind, params, run, times=None):
        """run() `times` (default --repeat) times; each result or failure is kept."""
        entry = self.scenario(key, kind, **params)
        for rep in range(times or self.args.repeat):
            self.ensure_sink()
            started = time.monotonic()
            first_process = len(self.processes)
            try:
                figures = run()
                figures["ok"] = True
            except Failure as e:
                figures = {"ok": False, "error": str(e)}
                log = os.path.join(self.out, "logs", f"{key.replace('/', '_')}-{rep + 1}.txt")
                with open(log, "w") as f:
                    f.write(str(e) + "\n")
                    for p in self.processes[first_process:]:
                        if isinstance(p, Agent):
                            f.write(f"\nthe agent's log ended with:\n{p.diagnosis()}\n")
                print(f"FAILED {key} (repetition {rep + 1}): {e} (more in {log})",
                      file=sys.stderr)
            finally:
                self.kill_processes(first_process)
            figures["seconds"] = round(time.monotonic() - started, 3)
            entry["runs"].append(figures)
            if figures["ok"]:
                print(f"  {key} #{rep + 1}: {short_figures(figures)}", file=sys.stderr)

    def ensure_sink(self):
        """A sink that is running: a new one if the last one is gone (something
        outside the suite stopped it), which the report then says."""
        if self.sink is not None:
            status = self.sink.proc.poll()
            if status is None:
                return
            self.notes.append(f"bench-sink (pid {self.sink.proc.pid}) exited with status {status} "
                              "during the suite, stopped from outside it (its log: logs/sink.log); "
                              "a new one was started: the runs in between failed")
            self.sink.log.close()
        self.sink = Sink(self.tool["sink"], os.path.join(self.out, "logs", "sink.log"))

    def loadgen_cmd(self, socket_path, events, conns, fmt, rate=0):
        return [self.tool["loadgen"], "--socket", socket_path, "--events", str(events),
                "--connections", str(conns), "--format", fmt, "--rate", str(rate),
                "--payloads", self.args.payloads]

    def loadgen(self, socket_path, events, conns, fmt, rate=0):
        timeout = 120 + (events / rate if rate else events / 5000)
        return run_json(self.loadgen_cmd(socket_path, events, conns, fmt, rate), timeout,
                        "bench-loadgen")

    def delivery_timeout(self, events):
        return 60 + events / 10000

    def start_agent(self, **kwargs):
        agent = Agent(self, self.sink, **kwargs)
        self.processes.append(agent)
        return agent.start(timeout=120 if kwargs.get("wrapper") else 30)

    # -- 1-3: agent CPU, throughput, memory on a burst --------------------

    def cpu_run(self, fmt, conns, gzip, spool, privacy=True):
        n = self.plan["events"]
        self.sink.reset()
        agent = self.start_agent(gzip=gzip, spool=spool, privacy=privacy)
        time.sleep(self.plan["idle_wait"])
        idle = agent.memory()
        cpu0 = agent.cpu_ns()
        lg = self.loadgen(agent.socket, n, conns, fmt)
        st = self.sink.wait_for(n, self.delivery_timeout(n))
        cpu1 = agent.cpu_ns()
        memory = agent.memory()
        check_agent_counters(agent.stop(), n)
        if self.sample is None and fmt == "native":
            self.sample = self.sink.sample()
        final = self.sink.stats()
        if final["events"] != n:
            raise Failure(f"the sink counted {final['events']} events, {n} were sent")
        elapsed = (st["last_event_ns"] - lg["first_write_ns"]) / 1e9
        return {
            "events": n,
            "agent_cpu_us_per_event": (cpu1 - cpu0) / n / 1000,
            "throughput_eps": n / elapsed if elapsed > 0 else 0.0,
            "elapsed_s": elapsed,
            "peak_rss_mib": memory["VmHWM"],
            "idle_rss_mib": idle["VmRSS"],
            "idle_anon_mib": idle["RssAnon"],
            "sink_cpu_us_per_event": st["cpu_ms"] * 1000 / n,
            "loadgen_cpu_ms": lg["cpu_ms"],
            "requests": final["requests"],
            "events_per_request": n / final["requests"] if final["requests"] else 0.0,
            "wire_bytes_per_event": final["wire_bytes"] / n,
            "json_bytes_per_event": final["plain_bytes"] / n,
        }

    def run_cpu(self):
        print("agent CPU, throughput and memory on a burst of "
              f"{self.plan['events']} events", file=sys.stderr)
        for fmt, conns, gzip, spool in self.plan["cpu"]:
            self.repeat(cpu_key(fmt, conns, gzip, spool), "cpu",
                        dict(format=fmt, connections=conns, gzip=gzip, spool=spool),
                        lambda: self.cpu_run(fmt, conns, gzip, spool))

    def run_privacy(self):
        """The [privacy] rules' cost: the burst of the cpu scenario native,
        4 connections, gzip, without any rule (the cpu scenarios run the
        default rules)."""
        print("the [privacy] rules' cost: the same burst without rules", file=sys.stderr)
        self.repeat("privacy/none/native/c4", "privacy",
                    dict(format="native", connections=4, gzip=True, spool=False, privacy=False),
                    lambda: self.cpu_run("native", 4, True, False, privacy=False))

    # -- 6: the floors -----------------------------------------------------

    def floor_run(self, fmt, conns):
        n = self.plan["events"]
        sock = os.path.join(tempfile.mkdtemp(prefix="floor-", dir=self.tmp), "floor.sock")
        floor = subprocess.Popen([self.tool["floor"], "--socket", sock, "--events", str(n)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.processes.append(floor)
        try:
            lg = self.loadgen(sock, n, conns, fmt)
            out, err = floor.communicate(timeout=self.delivery_timeout(n))
        except subprocess.TimeoutExpired:
            raise Failure("bench-floor did not count every event") from None
        finally:
            if floor.poll() is None:
                floor.kill()
                floor.wait()
        if floor.returncode != 0:
            raise Failure(f"bench-floor exited {floor.returncode}: {err.strip()}")
        result = parse_last_json(out, "bench-floor")
        if result["events"] != n or lg["events"] != n:
            raise Failure(f"bench-floor counted {result['events']} of {n} events")
        return {"cpu_us_per_event": result["cpu_ms"] * 1000 / n, "wall_ms": result["wall_ms"]}

    def compress_run(self, path):
        result = run_json([self.tool["floor"], "--compress", path, "--ms",
                           str(self.plan["compress_ms"])], 600, "bench-floor --compress")
        figures = {"events_per_body": result["events"], "body_bytes": result["plain_bytes"]}
        for name in ("libdeflate_1", "igzip_1"):
            if result.get(name) is not None:
                figures[f"{name}_ns_per_event"] = result[name]["ns_per_event"]
                figures[f"{name}_ratio"] = result[name]["ratio"]
        if result.get("igzip_1") is None:
            note = ("ISA-L igzip: not measured: bench-floor was built without ISA-L "
                    "(install libisal-dev; bench/run does)")
            if note not in self.notes:
                self.notes.append(note)
        return figures

    def run_floor(self):
        print("floors: msgpack-c unpacking of the same bytes; gzip of a real body",
              file=sys.stderr)
        for fmt, conns in sorted({(fmt, conns) for fmt, conns, _, _ in self.plan["cpu"]}):
            self.repeat(f"floor/unpack/{fmt}/c{conns}", "floor_unpack",
                        dict(format=fmt, connections=conns), lambda: self.floor_run(fmt, conns))
        if self.sample is None:  # no native run kept one: make one
            self.repeat("floor/sample", "sample", {}, self.sample_run, times=1)
        if self.sample is None:
            self.notes.append("compressor floor: no batch body was captured (see failures)")
            return
        path = os.path.join(self.out, "sample-body.json")
        with open(path, "wb") as f:
            f.write(self.sample)
        self.repeat("floor/compress", "floor_compress", {"body": "sample-body.json"},
                    lambda: self.compress_run(path))

    def sample_run(self):
        self.sink.reset()
        agent = self.start_agent()
        n = 2000
        self.loadgen(agent.socket, n, 1, "native")
        self.sink.wait_for(n, self.delivery_timeout(n))
        check_agent_counters(agent.stop(), n)
        self.sample = self.sink.sample()
        return {"events": n}

    # -- 4: latency ----------------------------------------------------------

    def latency_run(self, rate, seconds):
        n = int(rate * seconds)
        self.sink.reset()
        agent = self.start_agent()
        cpu0 = agent.cpu_ns()
        self.loadgen(agent.socket, n, 4, "native", rate=rate)
        st = self.sink.wait_for(n, self.delivery_timeout(n))
        cpu1 = agent.cpu_ns()
        check_agent_counters(agent.stop(), n)
        lat = st["latency_ns"]
        if lat["count"] != n:
            raise Failure(f"the sink timed {lat['count']} of {n} events")
        return {"events": n, "p50_ms": lat["p50"] / 1e6, "p99_ms": lat["p99"] / 1e6,
                "p999_ms": lat["p999"] / 1e6, "max_ms": lat["max"] / 1e6,
                "agent_cpu_us_per_event": (cpu1 - cpu0) / n / 1000}

    def run_latency(self):
        print("latency, paced native load on 4 connections", file=sys.stderr)
        for rate, seconds in self.plan["latency"].items():
            self.repeat(f"latency/{rate}", "latency", dict(rate=rate, seconds=seconds),
                        lambda: self.latency_run(rate, seconds))

    # -- 3: memory during a backend outage -----------------------------------

    def outage_run(self):
        rate, seconds = self.plan["outage_rate"], self.plan["outage_seconds"]
        n = rate * (seconds + 2)
        self.sink.reset()
        # short retry delays, so that delivery resumes soon after the outage
        agent = self.start_agent(backend={"retry_initial_ms": 100, "retry_max_ms": 1000})
        self.sink.outage(True)
        lg = subprocess.Popen(self.loadgen_cmd(agent.socket, n, 2, "native", rate),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.processes.append(lg)
        samples = []
        try:
            start = time.monotonic()
            for second in range(1, seconds + 1):
                time.sleep(max(0.0, start + second - time.monotonic()))
                memory = agent.memory()
                samples.append({"t": second, "rss_mib": memory["VmRSS"],
                                "anon_mib": memory["RssAnon"]})
        finally:
            self.sink.outage(False)
        rejected = self.sink.stats()["rejected_requests"]
        try:
            out, err = lg.communicate(timeout=self.delivery_timeout(n))
        except subprocess.TimeoutExpired:
            lg.kill()
            lg.wait()
            raise Failure("bench-loadgen did not finish after the outage") from None
        if lg.returncode != 0:
            raise Failure(f"bench-loadgen exited {lg.returncode}: {err.strip()}")
        self.sink.wait_for(n, self.delivery_timeout(n))
        peak = agent.memory()["VmHWM"]
        check_agent_counters(agent.stop(), n)
        if rejected == 0:
            raise Failure("the agent sent no request during the outage")
        return {"events": n, "rss_max_mib": max(s["rss_mib"] for s in samples),
                "rss_last_mib": samples[-1]["rss_mib"],
                "anon_max_mib": max(s["anon_mib"] for s in samples),
                "anon_last_mib": samples[-1]["anon_mib"], "peak_rss_mib": peak,
                "rejected_requests": rejected, "samples": samples,
                "loadgen_events": parse_last_json(out, "bench-loadgen")["events"]}

    def run_outage(self):
        print(f"memory during a {self.plan['outage_seconds']} s backend outage at "
              f"{self.plan['outage_rate']} events/s", file=sys.stderr)
        # One 30 s time series is the figure (its max and last value): run once.
        self.repeat("outage", "outage", dict(rate=self.plan["outage_rate"],
                                             seconds=self.plan["outage_seconds"]),
                    self.outage_run, times=1)

    # -- 5: producer cost ------------------------------------------------------

    def producer_cmd(self, client, socket_path, rate, seconds, flush):
        if client == "c":
            return [self.tool["producer"], "--socket", socket_path, "--rate", str(rate),
                    "--seconds", str(seconds), "--flush-ms", str(int(flush * 1000)),
                    "--payloads", self.args.payloads]
        return [sys.executable, os.path.join(HERE, "producer.py"), "--socket", socket_path,
                "--rate", str(rate), "--seconds", str(seconds), "--flush-s", str(flush),
                "--payloads", self.args.payloads] + (
                    ["--encoder-dir", self.python_encoder_dir] if self.python_encoder_dir else [])

    def producer_run(self, client, state):
        rate, seconds = self.plan["producer_c" if client == "c" else "producer_py"]
        agent = None
        if state == "absent":
            socket_path = os.path.join(tempfile.mkdtemp(prefix="absent-", dir=self.tmp),
                                       "agent.sock")
        else:
            self.sink.reset()
            agent = self.start_agent()
            socket_path = agent.socket
            if state == "stopped":
                os.kill(agent.pid, signal.SIGSTOP)
        try:
            result = run_json(self.producer_cmd(client, socket_path, rate, seconds,
                                                2.0 if state == "healthy" else 0),
                              seconds + 60, f"the {client} producer")
        finally:
            if agent is not None and state == "stopped":
                os.kill(agent.pid, signal.SIGCONT)
        if agent is not None:
            agent.stop()
        figures = {f"{q}_us": result[f"{q}_ns"] / 1000 for q in ("p50", "p99", "p999", "max",
                                                                  "mean")}
        figures.update(calls=result["calls"], ok=result["ok"], dropped=result["dropped"],
                       rate=rate)
        if client == "python":
            figures["encoder"] = result["encoder"]
            if self.python_encoder_dir and result["encoder"] != "c":
                raise Failure("the Python client did not load the C encoder built in "
                              + self.python_encoder_dir)
        if state == "healthy" and result["ok"] != result["calls"]:
            raise Failure(f"{result['calls'] - result['ok']} events dropped with a healthy agent")
        return figures

    def run_producer(self):
        print("producer cost: tlm_send and send_event per call", file=sys.stderr)
        for client in ("c", "python"):
            for state in ("healthy", "stopped", "absent"):
                self.repeat(f"producer/{client}/{state}", "producer",
                            dict(client=client, state=state),
                            lambda: self.producer_run(client, state))

    # -- 7: Fluent Bit -----------------------------------------------------------

    def fluentbit_run(self, binary, conns):
        n = self.plan["events"]
        self.sink.reset()
        folder = tempfile.mkdtemp(prefix="fluentbit-", dir=self.tmp)
        sock = os.path.join(folder, "forward.sock")
        config = os.path.join(folder, "fluent-bit.conf")
        with open(config, "w") as f:
            f.write(f"""[SERVICE]
    Flush        1
    Grace        2
    Log_Level    warn
    HTTP_Server  Off

[INPUT]
    Name         forward
    Unix_Path    {sock}

[OUTPUT]
    Name         http
    Match        *
    Host         127.0.0.1
    Port         {self.sink.port}
    URI          /batch
    Format       json
    Compress     gzip
""")
        log = open(os.path.join(folder, "fluent-bit.log"), "wb")
        proc = subprocess.Popen([binary, "-c", config], stdout=log, stderr=log)
        self.processes.append(proc)
        try:
            wait_for_socket(sock, proc, 30)
            cpu0 = read_proc_stat_cpu_ns(proc.pid)
            lg = self.loadgen(sock, n, conns, "forward")
            st = self.sink.wait_for(n, self.delivery_timeout(n))
            cpu1 = read_proc_stat_cpu_ns(proc.pid)
            memory = read_proc_memory_mib(proc.pid)
        finally:
            status = stop_process(proc)
            log.close()
        elapsed = (st["last_event_ns"] - lg["first_write_ns"]) / 1e9
        return {"events": n, "cpu_us_per_event": (cpu1 - cpu0) / n / 1000,
                "peak_rss_mib": memory["VmHWM"], "throughput_eps": n / elapsed,
                "exit_status": status}

    def run_fluentbit(self):
        binary = self.args.fluent_bit
        if not binary or not os.access(binary, os.X_OK):
            self.notes.append("Fluent Bit: skipped: no fluent-bit binary "
                              "(set FLUENT_BIT=/path/to/fluent-bit or --fluent-bit)")
            return
        print(f"Fluent Bit ({binary}) side by side, forward input, gzip", file=sys.stderr)
        for conns in self.plan["fluentbit_connections"]:
            self.repeat(f"fluentbit/c{conns}", "fluentbit", dict(connections=conns),
                        lambda: self.fluentbit_run(binary, conns))

    # -- callgrind ------------------------------------------------------------------

    def callgrind_ir(self, events):
        """Ir of an agent that takes `events` native events (gzip, 1 connection)."""
        self.sink.reset()
        out_file = os.path.join(self.tmp, f"callgrind.{events}.out")
        agent = self.start_agent(wrapper=["valgrind", "--tool=callgrind",
                                          f"--callgrind-out-file={out_file}"])
        self.loadgen(agent.socket, events, 1, "native")
        self.sink.wait_for(events, 600)
        check_agent_counters(agent.stop(), events)
        with open(out_file) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
        raise Failure(f"no summary line in {out_file}")

    def callgrind_run(self):
        small, large = self.plan["callgrind_events"]
        ir_small, ir_large = self.callgrind_ir(small), self.callgrind_ir(large)
        return {"ir_per_event": (ir_large - ir_small) / (large - small),
                "ir_total_small": ir_small, "ir_total_large": ir_large,
                "events_small": small, "events_large": large}

    def run_callgrind(self):
        if shutil.which("valgrind") is None:
            self.notes.append("callgrind: skipped: valgrind is not installed")
            return
        print("instructions per event under callgrind", file=sys.stderr)
        self.repeat("callgrind", "callgrind", dict(format="native", connections=1, gzip=True),
                    self.callgrind_run, times=1)

    # -- all of it ------------------------------------------------------------------

    def run(self):
        self.sample = None
        self.ensure_sink()
        try:
            for kind in self.args.only:
                getattr(self, f"run_{kind}")()
        finally:
            self.cleanup()

    def kill_processes(self, first=0):
        """Kill what a run left behind (a failed run), from processes[first] on."""
        for p in self.processes[first:]:
            if p.poll() is None:
                p.kill()
                p.wait()
        del self.processes[first:]

    def cleanup(self):
        try:
            self.kill_processes()
        finally:
            self.stop_sink()

    def stop_sink(self):
        if self.sink is not None:
            try:
                self.sink.stop()
            except Failure as e:
                self.notes.append(f"the sink: {e}")
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_for_socket(path, proc, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise Failure(f"exited {proc.returncode} before listening on {path}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise Failure(f"nothing listened on {path} within {timeout} s") from None
            time.sleep(0.05)


def short_figures(figures):
    keys = [k for k, v in figures.items() if isinstance(v, float)][:4]
    return ", ".join(f"{k}={figures[k]:.4g}" for k in keys)


# ---------------------------------------------------------------- main

def parse_args():
    parser = argparse.ArgumentParser(
        description="Benchmark telemetry-agent: CPU, throughput, memory, latency, producer "
                    "cost, against the floors (and Fluent Bit when there is one).")
    parser.add_argument("--smoke", action="store_true",
                        help="every kind of scenario once, tiny (seconds): checks the harness")
    parser.add_argument("--build", default=os.path.join(ROOT, "build-bench"),
                        help="build directory with telemetry-agent and bench/bench-* "
                             "(default build-bench)")
    parser.add_argument("--out", help="report directory (default bench/results/<date>)")
    parser.add_argument("--repeat", type=int, help="runs of each scenario (3; smoke 1)")
    parser.add_argument("--events", type=int,
                        help="events in each burst (1000000; smoke 20000)")
    parser.add_argument("--fluent-bit", default=os.environ.get("FLUENT_BIT", ""),
                        help="a fluent-bit binary to compare with (default $FLUENT_BIT)")
    parser.add_argument("--callgrind", action="store_true",
                        help="also count instructions per event under valgrind's callgrind")
    parser.add_argument("--payloads", default=DEFAULT_PAYLOADS,
                        help="ndjson of {event, properties} (default the Orchest payloads)")
    parser.add_argument("--only", help="comma-separated kinds to run, of: " + ", ".join(KINDS))
    args = parser.parse_args()
    args.repeat = args.repeat or (1 if args.smoke else 3)
    if args.repeat < 1 or (args.events is not None and args.events < 100):
        parser.error("--repeat must be at least 1 and --events at least 100")
    if args.only:
        args.only = [k.strip() for k in args.only.split(",") if k.strip()]
        unknown = [k for k in args.only if k not in KINDS]
        if unknown:
            parser.error(f"--only: unknown kind {', '.join(unknown)} (kinds: {', '.join(KINDS)})")
    else:
        args.only = [k for k in KINDS if k != "callgrind" or args.callgrind]
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
        args.out = os.path.join(HERE, "results", stamp + ("-smoke" if args.smoke else ""))
    args.payloads = os.path.abspath(args.payloads)
    return args


def main():
    args = parse_args()
    bench = Bench(args)
    started = time.monotonic()

    def interrupted(signum, frame):
        raise KeyboardInterrupt
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)
    try:
        bench.run()
    except KeyboardInterrupt:
        bench.notes.append("interrupted: the report holds the runs done so far")
        print("interrupted", file=sys.stderr)
    except Failure as e:  # the sink itself did not start
        bench.notes.append(f"the suite stopped: {e}")
        print(f"FAILED: {e}", file=sys.stderr)
    markdown, missing = write_reports(bench, bench.machine)
    print(markdown)
    failed = sum(e["failed"] for e in bench.scenarios.values())
    print(f"\n{len(bench.scenarios)} scenarios, {failed} failed runs, "
          f"{len(missing)} missing figures, {time.monotonic() - started:.0f} s; "
          f"report in {bench.out}", file=sys.stderr)
    if failed or any(n.startswith(("interrupted", "the suite stopped")) for n in bench.notes):
        return 1
    if args.smoke and missing:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
