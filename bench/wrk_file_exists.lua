wrk.method = "POST"
wrk.body = '{"path":"/workspace"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("AGENTBOX_API_KEY") or "k1")
