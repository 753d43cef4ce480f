"""agentbox.integrations.aimanus against a real agentboxd: ai-manus's Sandbox protocol, with the
bodies ai-manus's DockerSandbox sends and the (success, message, data) results it expects."""

import inspect
import io
import unittest

import _env
import agentbox
from agentbox.integrations.aimanus import AgentboxSandbox, ToolResult

# ai-manus's Sandbox protocol (backend/app/domain/external/sandbox.py): method -> parameters.
PROTOCOL = {
    "ensure_sandbox": [],
    "exec_command": ["session_id", "exec_dir", "command"],
    "view_shell": ["session_id", "console"],
    "wait_for_process": ["session_id", "seconds"],
    "write_to_process": ["session_id", "input_text", "press_enter"],
    "kill_process": ["session_id"],
    "file_write": ["file", "content", "append", "leading_newline", "trailing_newline", "sudo"],
    "file_read": ["file", "start_line", "end_line", "sudo", "max_length"],
    "file_exists": ["path"],
    "file_delete": ["path"],
    "file_list": ["path"],
    "file_replace": ["file", "old_str", "new_str", "sudo"],
    "file_search": ["file", "regex", "sudo"],
    "file_find": ["path", "glob_pattern"],
    "file_upload": ["file_data", "path", "filename"],
    "file_download": ["path"],
    "destroy": [],
    "get_browser": [],
}


class Protocol(unittest.TestCase):
    def test_method_names_and_parameters_match_ai_manus(self):
        for name, params in PROTOCOL.items():
            method = getattr(AgentboxSandbox, name)
            self.assertTrue(inspect.iscoroutinefunction(method), name)
            got = [p for p in inspect.signature(method).parameters if p != "self"]
            self.assertEqual(got, params, name)
        for name in ("create", "get"):
            self.assertTrue(inspect.iscoroutinefunction(getattr(AgentboxSandbox, name)), name)
        for prop in ("id", "cdp_url", "vnc_url"):
            self.assertIsInstance(inspect.getattr_static(AgentboxSandbox, prop), property)


class Adapter(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        AgentboxSandbox.configure(agentbox.Client(_env.UNIX), ttl_s=600,
                                  services={"svc": "sleep 600"})
        self.sb = await AgentboxSandbox.create()

    async def asyncTearDown(self):
        await self.sb.destroy()

    async def test_shell(self):
        sb = self.sb
        self.assertEqual(sb.sandbox.info.backend, _env.BACKEND)
        await sb.ensure_sandbox()
        r = await sb.exec_command("s1", "/tmp", "echo hi; pwd")
        self.assertIsInstance(r, ToolResult)
        self.assertTrue(r.success)
        self.assertEqual(r.data["output"], "hi\n/tmp\n")
        self.assertEqual(r.data["status"], "completed")
        r = await sb.exec_command("s1", "/tmp", "read x; echo got $x")
        self.assertEqual(r.data["status"], "running")
        self.assertTrue((await sb.write_to_process("s1", "it", True)).success)
        r = await sb.wait_for_process("s1", 10)
        self.assertEqual(r.data["returncode"], 0)
        r = await sb.view_shell("s1", console=True)
        self.assertIn("got it", r.data["output"])
        self.assertEqual(len(r.data["console"]), 2)
        await sb.exec_command("s1", "/tmp", "sleep 60")
        r = await sb.kill_process("s1")
        self.assertEqual(r.data["status"], "terminated")
        # A failed call is a result too, as ai-manus builds ToolResult from any answer.
        r = await sb.write_to_process("s1", "nobody reads", True)
        self.assertFalse(r.success)
        self.assertTrue(r.message)
        r = await sb.view_shell("no-such-session")
        self.assertFalse(r.success)

    async def test_files(self):
        sb = self.sb
        r = await sb.file_write("/tmp/m.txt", "a\nb\nc\n")
        self.assertTrue(r.success)
        self.assertEqual(r.data["file"], "/tmp/m.txt")
        r = await sb.file_read("/tmp/m.txt", start_line=0, end_line=2)
        self.assertEqual(r.data["content"], "a\nb")  # ai-manus's '\n'.join of the lines
        r = await sb.file_read("/tmp/m.txt")
        self.assertEqual(r.data["content"], "a\nb\nc\n")
        self.assertEqual((await sb.file_replace("/tmp/m.txt", "b", "B")).data["replaced_count"], 1)
        self.assertEqual((await sb.file_search("/tmp/m.txt", "B")).data["line_numbers"], [1])
        self.assertEqual((await sb.file_find("/tmp", "m.*")).data["files"], ["/tmp/m.txt"])
        self.assertTrue((await sb.file_exists("/tmp/m.txt")).data["exists"])
        names = [e["name"] for e in (await sb.file_list("/tmp")).data["entries"]]
        self.assertIn("m.txt", names)
        self.assertTrue((await sb.file_delete("/tmp/m.txt")).data["deleted"])
        self.assertFalse((await sb.file_exists("/tmp/m.txt")).data["exists"])
        r = await sb.file_read("/tmp/m.txt")
        self.assertFalse(r.success)
        self.assertIn("/tmp/m.txt", r.message)
        r = await sb.file_upload(io.BytesIO(b"up" * 100000), "/tmp/up.bin", "up.bin")
        self.assertTrue(r.success)
        self.assertEqual(r.message, "File uploaded successfully")
        self.assertEqual(r.data["file_size"], 200000)
        blob = await sb.file_download("/tmp/up.bin")
        with blob:
            self.assertEqual(blob.read(), b"up" * 100000)
        with self.assertRaises(agentbox.NotFound):
            await sb.file_download("/tmp/none")

    async def test_get_destroy_and_result_factory(self):
        again = await AgentboxSandbox.get(self.sb.id)
        self.assertEqual(again.id, self.sb.id)
        self.assertEqual(self.sb.cdp_url, "")
        with self.assertRaises(NotImplementedError):
            await self.sb.get_browser()

        class TheirToolResult:
            def __init__(self, success, message=None, data=None):
                self.success, self.message, self.data = success, message, data

        AgentboxSandbox.result_factory = TheirToolResult
        try:
            r = await again.exec_command("x", "/", "true")
            self.assertIsInstance(r, TheirToolResult)
            self.assertTrue(r.success)
        finally:
            AgentboxSandbox.result_factory = ToolResult
        other = await AgentboxSandbox.create()
        self.assertTrue(await other.destroy())
        self.assertFalse(await other.destroy())  # already gone: False, as ai-manus's contract
        with self.assertRaises(agentbox.NotFound):
            await AgentboxSandbox.get(other.id)


if __name__ == "__main__":
    unittest.main()
