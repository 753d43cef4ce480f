"""The client over TLS (https:// and the daemon's tls:HOST:PORT form) with an ssl context.

agentboxd's own TLS listener is another change; until then this checks the client's side against
a local TLS server that answers like the daemon, with a throw-away CA made by openssl.
"""

import http.server
import importlib.util
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import unittest

import _env  # noqa: F401 - sys.path
import agentbox


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        auth = self.headers.get("Authorization", "")
        if auth != "Bearer k":
            body, status = {"success": False, "message": "missing or wrong API key",
                            "data": None}, 401
        else:
            body, status = {"success": True, "message": "ok",
                            "data": {"backend": "jail", "reason": "STATIC"}}, 200
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


HAVE_OPENSSL = shutil.which("openssl") is not None
HAVE_HTTPX = importlib.util.find_spec("httpx") is not None
_server = {}


def setUpModule():  # noqa: N802 - unittest's name
    if not HAVE_OPENSSL:
        return
    d = tempfile.mkdtemp()
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _server.update(dir=d, cert=cert, server=server, port=server.server_address[1])


def tearDownModule():  # noqa: N802
    if _server:
        _server["server"].shutdown()
        _server["server"].server_close()
        shutil.rmtree(_server["dir"], ignore_errors=True)


@unittest.skipUnless(HAVE_OPENSSL, "SKIPPED (not a pass): openssl is not installed")
class Tls(unittest.TestCase):
    def setUp(self):
        self.cert, self.port = _server["cert"], _server["port"]

    def test_verified_with_the_ca(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        for url in (f"https://127.0.0.1:{self.port}", f"tls:127.0.0.1:{self.port}"):
            c = agentbox.Client(url, api_key="k", ssl_context=ctx)
            self.assertEqual(c.info()["reason"], "STATIC")
        with self.assertRaises(agentbox.Unauthorized):
            agentbox.Client(f"https://127.0.0.1:{self.port}", ssl_context=ctx).info()

    def test_unknown_ca_is_refused(self):
        with self.assertRaises(agentbox.TransportError) as e:
            agentbox.Client(f"https://127.0.0.1:{self.port}", api_key="k").info()
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(e.exception))

    def test_ssl_context_on_a_plain_address_is_an_error(self):
        with self.assertRaises(ValueError):
            agentbox.Client("http://127.0.0.1:1", ssl_context=ssl.create_default_context())

    def test_addresses(self):
        from agentbox._transport import Endpoint
        self.assertEqual(Endpoint.parse("unix:///run/a.sock"), Endpoint("unix", path="/run/a.sock"))
        self.assertEqual(Endpoint.parse("tcp:127.0.0.1:80"), Endpoint("http", "127.0.0.1", 80))
        self.assertEqual(Endpoint.parse("https://h"), Endpoint("https", "h", 443))
        for bad in ("", "ftp://h", "unix:rel.sock", "tcp:nohost", "http://h:1/path"):
            with self.assertRaises(ValueError, msg=bad):
                Endpoint.parse(bad)


@unittest.skipUnless(HAVE_OPENSSL and HAVE_HTTPX,
                     "SKIPPED (not a pass): openssl or httpx is not installed")
class AsyncTls(unittest.IsolatedAsyncioTestCase):
    async def test_verified_with_the_ca(self):
        ctx = ssl.create_default_context(cafile=_server["cert"])
        async with agentbox.AsyncClient(f"tls:127.0.0.1:{_server['port']}", api_key="k",
                                        ssl_context=ctx) as c:
            self.assertEqual((await c.info())["backend"], "jail")


if __name__ == "__main__":
    unittest.main()
