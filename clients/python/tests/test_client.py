"""The sync client against a real agentboxd (tests/python/run_tests.sh starts it)."""

import hashlib
import io
import os
import tempfile
import threading
import time
import unittest

import _env  # noqa: F401 - sets sys.path and reads the daemon's address
import agentbox
from agentbox._wire import Call


def unix_client() -> agentbox.Client:
    return agentbox.Client(_env.UNIX)


def tcp_client(key_index: int = 0) -> agentbox.Client:
    return agentbox.Client(_env.TCP, api_key=_env.KEYS[key_index])


class SandboxLifecycle(unittest.TestCase):
    def test_create_get_list_timeout_delete_over_tcp_with_a_key(self):
        c = tcp_client()
        sb = c.create(ttl_s=300, labels={"suite": "python"}, env={"MODE": "test"})
        try:
            self.assertTrue(sb.id.startswith("sb-"))
            self.assertEqual(sb.info.backend, _env.BACKEND)
            self.assertIsInstance(sb.info.selection, dict)
            self.assertEqual(sb.info.labels, {"suite": "python"})
            got = c.get(sb.id)
            self.assertEqual(got.info.id, sb.id)
            self.assertEqual(got.info.state, "running")
            self.assertIn(sb.id, [s.id for s in c.list()])
            before = got.info.expires_at
            expires = sb.set_timeout(3600)
            self.assertGreater(expires, before)
            self.assertAlmostEqual(sb.refresh().expires_at, expires, delta=1)
            self.assertEqual(sb.run("echo $MODE").stdout, "test\n")
        finally:
            self.assertTrue(sb.destroy())
        with self.assertRaises(agentbox.NotFound) as e:
            c.get(sb.id)
        self.assertIn(sb.id, e.exception.message)
        self.assertEqual(e.exception.status, 404)

    def test_keys_see_only_their_sandboxes(self):
        with tcp_client(0).create(ttl_s=120) as sb:
            with self.assertRaises(agentbox.NotFound):
                tcp_client(1).get(sb.id)
            self.assertNotIn(sb.id, [s.id for s in tcp_client(1).list()])
            # The unix socket's callers see everything.
            self.assertEqual(unix_client().get(sb.id).id, sb.id)

    def test_missing_or_wrong_key_is_unauthorized(self):
        with self.assertRaises(agentbox.Unauthorized) as e:
            agentbox.Client(_env.TCP).list()
        self.assertTrue(e.exception.message)
        with self.assertRaises(agentbox.Unauthorized):
            agentbox.Client(_env.TCP, api_key="wrong").list()

    def test_unknown_create_field_is_a_validation_error_naming_it(self):
        c = unix_client()
        r = c.request(Call("POST", "/v1/sandboxes", {"ttl": 30}))
        self.assertFalse(r.success)
        self.assertEqual(r.status, 422)
        with self.assertRaises(agentbox.ValidationError) as e:
            c.run(Call("POST", "/v1/sandboxes", {"ttl": 30}))
        self.assertIn("ttl_s", e.exception.message)
        self.assertEqual(e.exception.fields, ["ttl"])

    def test_unreachable_daemon_is_a_transport_error(self):
        with self.assertRaises(agentbox.TransportError):
            agentbox.Client("unix:/nonexistent/agentboxd.sock").list()

    def test_info_and_flags(self):
        c = unix_client()
        info = c.info()
        self.assertIn("backend", info)
        self.assertIn("reason", info)
        flags = c.flags()
        self.assertIsInstance(flags, dict)
        self.assertIsInstance(c.health(), dict)
        with self.assertRaises(agentbox.Forbidden):
            tcp_client().set_flags({"SANDBOX_BACKEND": _env.BACKEND})


class SandboxOps(unittest.TestCase):
    sb: agentbox.Sandbox

    @classmethod
    def setUpClass(cls):
        cls.client = unix_client()
        cls.sb = cls.client.create(ttl_s=600)

    @classmethod
    def tearDownClass(cls):
        cls.sb.destroy()

    def test_session_state_persists(self):
        sb = self.sb
        r = sb.exec("cd /tmp && export A=1 && B=2 && f() { echo f$1; } && alias g='echo g'",
                    session_id="state")
        self.assertIsInstance(r, agentbox.CommandResult)
        self.assertEqual(r.status, "completed")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.cwd, "/tmp")
        r = sb.run("echo $A $B; f x; g; pwd", session_id="state")
        self.assertEqual(r.stdout, "1 2\nfx\ng\n/tmp\n")
        self.assertEqual(r.exit_code, 0)
        r = sb.exec("pwd", session_id="state", exec_dir="/")
        self.assertEqual(r.output, "/\n")
        self.assertEqual(sb.run("pwd", session_id="state").stdout, "/tmp\n")
        r = sb.run("echo out; echo err >&2; exit 3", session_id="state")
        self.assertEqual((r.stdout, r.stderr, r.exit_code), ("out\n", "err\n", 3))
        self.assertIn("state", [s.session_id for s in sb.sessions()])
        sb.delete_session("state")
        self.assertNotIn("state", [s.session_id for s in sb.sessions()])

    def test_running_command_wait_write_kill_view(self):
        sb = self.sb
        r = sb.exec("read line; echo got:$line", session_id="io", wait_seconds=0.2)
        self.assertTrue(r.running)
        self.assertIsNone(r.returncode)
        with self.assertRaises(agentbox.Conflict) as e:
            sb.exec("true", session_id="io")
        self.assertTrue(e.exception.message)
        sb.write("io", "hello")
        self.assertEqual(sb.wait("io", seconds=10), 0)
        v = sb.view("io", console=True)
        self.assertIn("got:hello", v.output)
        self.assertIsInstance(v.console[-1], agentbox.ConsoleEntry)
        self.assertIn("read line", v.console[-1].command)
        sb.exec("sleep 30", session_id="io", wait_seconds=0)
        with self.assertRaises(agentbox.BadRequest) as e:
            sb.wait("io", seconds=0.3)
        self.assertIn("Wait timeout", e.exception.message)
        killed = sb.kill("io")
        self.assertEqual(killed["status"], "terminated")
        r = sb.exec("sleep 5", session_id="io", timeout=0.3, wait_seconds=10)
        self.assertTrue(r.timed_out)
        self.assertEqual(r.returncode, 124)

    def test_validation_error_names_the_field(self):
        with self.assertRaises(agentbox.ValidationError) as e:
            self.sb.exec("true", wait_seconds=-1)
        self.assertEqual(e.exception.fields, ["wait_seconds"])
        self.assertEqual(e.exception.status, 422)

    def test_processes(self):
        sb = self.sb
        pid = sb.start_process("echo start; sleep 30", session_id="procs", env={"P": "1"})
        procs = sb.processes("procs")
        self.assertIn(pid, [p.pid for p in procs])
        self.assertTrue(next(p for p in procs if p.pid == pid).running)
        deadline = time.time() + 10
        logs = sb.process_logs(pid)
        while "start" not in logs.output and time.time() < deadline:
            time.sleep(0.05)
            logs = sb.process_logs(pid)
        self.assertEqual(logs.output, "start\n")
        self.assertEqual(sb.process_logs(pid, offset=logs.next_offset).output, "")
        k = sb.kill_processes(pattern="sleep 30", signal="TERM")
        self.assertEqual(k.killed_pids, [pid])
        with self.assertRaises(agentbox.NotFound):
            sb.process_logs(999999)

    def test_file_operations(self):
        sb = self.sb
        self.assertEqual(sb.write_file("/workspace/d/a.txt", "l0\nl1\r\nl2\n"), 10)
        self.assertEqual(sb.read_file("/workspace/d/a.txt").content, "l0\nl1\r\nl2\n")
        # A line range joins the lines as ai-manus does: no endings, no final newline.
        self.assertEqual(sb.read_file("/workspace/d/a.txt", start_line=1).content, "l1\nl2")
        r = sb.read_file("/workspace/d/a.txt", max_length=4)
        self.assertEqual((r.content, r.truncated), ("l0\nl", True))
        sb.write_file("/workspace/d/a.txt", "l3", append=True, leading_newline=True)
        st = sb.exists("/workspace/d/a.txt")
        self.assertEqual((st.exists, st.type), (True, "file"))
        self.assertFalse(sb.exists("/workspace/none").exists)
        self.assertEqual(sb.replace("/workspace/d/a.txt", "l", "L"), 4)
        found = sb.search("/workspace/d/a.txt", "L[23]")
        self.assertEqual(found.line_numbers, [2, 4])
        listing = sb.list_dir("/workspace/d")
        self.assertEqual([e.name for e in listing.entries], ["a.txt"])
        self.assertEqual(listing.entries[0].type, "file")
        self.assertEqual(sb.find("/workspace", "**/*.txt").files, ["/workspace/d/a.txt"])
        with self.assertRaises(agentbox.BadRequest):
            sb.search("/workspace/d/a.txt", "(")
        with self.assertRaises(agentbox.NotFound) as e:
            sb.read_file("/workspace/none")
        self.assertIn("/workspace/none", e.exception.message)
        self.assertTrue(sb.delete("/workspace/d", recursive=True))
        self.assertFalse(sb.exists("/workspace/d").exists)

    def test_upload_and_download_stream(self):
        sb = self.sb
        data = os.urandom(3 * 1024 * 1024 + 17)
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "blob.bin")
            with open(src, "wb") as f:
                f.write(data)
            up = sb.upload("/workspace/up/blob.bin", src)
            self.assertEqual((up.file_path, up.file_size), ("/workspace/up/blob.bin", len(data)))
            dest = os.path.join(tmp, "back.bin")
            self.assertEqual(sb.download_to("/workspace/up/blob.bin", dest), len(data))
            with open(dest, "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).digest(),
                                 hashlib.sha256(data).digest())
        # A file object of unknown size goes chunked.
        r, w = os.pipe()
        threading.Thread(target=lambda: (os.write(w, b"piped" * 1000), os.close(w))).start()
        with os.fdopen(r, "rb") as pipe:
            self.assertEqual(sb.upload("/workspace/up/pipe.txt", pipe).file_size, 5000)
        self.assertEqual(sb.upload("/workspace/up/b.txt", b"bytes").file_size, 5)
        with sb.download("/workspace/up/b.txt") as d:
            self.assertEqual(d.read(), b"bytes")
        buf = io.BytesIO()
        sb.download_to("/workspace/up/pipe.txt", buf)
        self.assertEqual(buf.getvalue(), b"piped" * 1000)
        with self.assertRaises(agentbox.NotFound):
            sb.download("/workspace/up/none")

    def test_output_stream(self):
        sb = self.sb
        sb.exec("for i in 1 2 3; do echo n$i; sleep 0.1; done", session_id="sse",
                wait_seconds=0)
        out, status = "", None
        for ev in sb.stream("sse", offset=0):
            self.assertIsInstance(ev, agentbox.StreamEvent)
            if ev.event == "output":
                out += ev.data["output"]
            if ev.event == "status":
                status = ev.data
                break
        self.assertEqual(out, "n1\nn2\nn3\n")
        self.assertEqual(status["returncode"], 0)
        # Resumed from an offset: only what came after it, then the finished status.
        events = []
        for ev in sb.stream("sse", offset=3):
            events.append(ev)
            if ev.event == "status":
                break
        self.assertEqual("".join(e.data["output"] for e in events if e.event == "output"),
                         "n2\nn3\n")
        with self.assertRaises(agentbox.NotFound):
            next(sb.stream("no-such-session"))

    def test_guest_health(self):
        h = self.sb.guest_health()
        self.assertIn("version", h)


class Supervisor(unittest.TestCase):
    def test_services_status_stop_restart_and_ttl(self):
        c = unix_client()
        with c.create(ttl_s=600, services={"web": "sleep 600"}) as sb:
            status = sb.supervisor("status")
            self.assertEqual([s["name"] for s in status], ["agentbox-guest", "web"])
            self.assertEqual({s["statename"] for s in status}, {"RUNNING"})
            self.assertTrue(all(isinstance(s["pid"], int) for s in status))
            stopped = sb.supervisor("stop")
            self.assertEqual((stopped["status"], stopped["result"]), ("stopped", ["web"]))
            states = {s["name"]: s["statename"] for s in sb.supervisor("status")}
            self.assertEqual(states, {"agentbox-guest": "RUNNING", "web": "STOPPED"})
            restarted = sb.supervisor("restart")
            self.assertEqual(restarted["start_result"], ["web"])
            states = {s["name"]: s["statename"] for s in sb.supervisor("status")}
            self.assertEqual(states["web"], "RUNNING")
            self.assertEqual(sb.supervisor("shutdown")["shutdown_result"], ["web"])
            self.assertEqual(sb.run("echo still here").stdout, "still here\n")

            t = sb.supervisor("timeout/status")
            self.assertTrue(t["active"])
            self.assertGreater(t["remaining_seconds"], 500)
            ext = sb.supervisor("timeout/extend", {"minutes": 2})
            self.assertEqual((ext["status"], ext["timeout_minutes"]), ("timeout_extended", 2))
            self.assertAlmostEqual(sb.refresh().expires_at, time.time() + 120, delta=10)
            act = sb.supervisor("timeout/activate", {"minutes": 30})
            self.assertEqual(act["status"], "timeout_activated")
            self.assertAlmostEqual(sb.refresh().expires_at, time.time() + 1800, delta=10)
            cancel = sb.supervisor("timeout/cancel")
            self.assertEqual(cancel["status"], "timeout_cancelled")
            self.assertGreater(sb.refresh().expires_at, time.time() + 86400)
            with self.assertRaises(agentbox.ValidationError) as e:
                sb.supervisor("timeout/extend", {"minutes": "soon"})
            self.assertEqual(e.exception.fields, ["minutes"])


if __name__ == "__main__":
    unittest.main()
