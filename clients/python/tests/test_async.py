"""agentbox.AsyncClient (httpx) against a real agentboxd: unix socket and TCP with a key."""

import importlib.util
import unittest

import _env
import agentbox

HAVE_HTTPX = importlib.util.find_spec("httpx") is not None


@unittest.skipUnless(HAVE_HTTPX, "SKIPPED (not a pass): httpx is not installed "
                     "(scripts/install-deps.sh installs python3-httpx)")
class AsyncClientTest(unittest.IsolatedAsyncioTestCase):
    async def test_sandbox_over_unix_socket(self):
        async with agentbox.AsyncClient(_env.UNIX) as c:
            async with await c.create(ttl_s=300) as sb:
                self.assertEqual(sb.info.backend, _env.BACKEND)
                r = await sb.exec("cd /tmp; export Q=9", session_id="a")
                self.assertIsInstance(r, agentbox.CommandResult)
                self.assertEqual((await sb.run("echo $Q; pwd", session_id="a")).stdout,
                                 "9\n/tmp\n")
                up = await sb.upload("/tmp/f.bin", b"\x00\x01" * 50000)
                self.assertEqual(up.file_size, 100000)
                chunks = []
                async with sb.download("/tmp/f.bin") as d:
                    async for chunk in d.aiter_bytes():
                        chunks.append(chunk)
                self.assertEqual(b"".join(chunks), b"\x00\x01" * 50000)
                with self.assertRaises(agentbox.NotFound):
                    async with sb.download("/tmp/none"):
                        pass
                await sb.exec("echo one; sleep 0.2; echo two", session_id="s", wait_seconds=0)
                out = ""
                async for ev in sb.stream("s", offset=0):
                    if ev.event == "output":
                        out += ev.data["output"]
                    if ev.event == "status":
                        break
                self.assertEqual(out, "one\ntwo\n")
                self.assertIn(sb.id, [s.id for s in await c.list()])
                self.assertIn("backend", await c.info())

    async def test_tcp_with_key_and_errors(self):
        async with agentbox.AsyncClient(_env.TCP, api_key=_env.KEYS[0]) as c:
            sb = await c.create(ttl_s=120)
            try:
                with self.assertRaises(agentbox.ValidationError) as e:
                    await sb.exec("true", wait_seconds=-1)
                self.assertEqual(e.exception.fields, ["wait_seconds"])
                with self.assertRaises(agentbox.NotFound):
                    await sb.read_file("/none")
            finally:
                await sb.destroy()
        async with agentbox.AsyncClient(_env.TCP) as c:
            with self.assertRaises(agentbox.Unauthorized):
                await c.list()


if __name__ == "__main__":
    unittest.main()
