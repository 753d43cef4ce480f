#pragma once

// agentbox-gcp-emulator for the port suite's cloudrun-session daemon, as the conformance suite
// starts it (tests/conformance/conformance_fixture.h): a private emulator with one bucket whose
// executions run AGENTBOX_CLOUDRUN_IMAGE (default agentbox/base:latest) on the local Docker
// engine.

#include <curl/curl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "fakes/child_process.h"
#include "fakes/curl_http.h"

namespace agentbox::ports_test {

// Starts the emulator (its pid in *pid, its log in <dir>/emulator.log) and makes the bucket.
// Returns the daemon's KEY=VALUE configuration lines for cloudrun in session mode, with
// `public_url` where the executions' guests dial back; empty on failure.
inline std::string StartGcpEmulator(const std::string& dir, const std::string& public_url,
                                    pid_t* pid) {
#ifndef AGENTBOX_GCP_EMULATOR_BIN
  (void)dir;
  (void)public_url;
  (void)pid;
  return "";
#else
  int out[2];
  if (pipe(out) != 0) {
    return "";
  }
  *pid = test_support::Spawn({AGENTBOX_GCP_EMULATOR_BIN, "--listen", "tcp:127.0.0.1:0", "--data",
                              dir + "/emulator", "--volumes", "bind"},
                             dir + "/emulator.log", out[1]);
  close(out[1]);
  const std::string url = test_support::ReadListenUrl(out[0]);
  if (url.empty()) {
    return "";
  }
  CURLcode rc = CURLE_OK;
  const test_support::Reply bucket = test_support::CurlHttp(
      "", "POST", url + "/storage/v1/b?project=ports-project", R"({"name":"ports-bucket"})",
      {"Authorization: Bearer ports", "Content-Type: application/json"}, &rc);
  if (rc != CURLE_OK || bucket.status != 200) {
    return "";
  }
  const char* image = std::getenv("AGENTBOX_CLOUDRUN_IMAGE");
  return "SANDBOX_GCP_PROJECT=ports-project\nSANDBOX_GCS_BUCKET=ports-bucket\n"
         "AGENTBOX_CLOUDRUN_ENDPOINT=" + url + "\nSTORAGE_EMULATOR_HOST=" + url +
         "\nGOOGLE_OAUTH_ACCESS_TOKEN=ports\nAGENTBOX_CLOUDRUN_POLL_MS=50\n"
         "AGENTBOX_CLOUDRUN_IMAGE=" + std::string(image && *image ? image : "agentbox/base:latest") +
         "\nAGENTBOX_CLOUDRUN_MODE=session\nAGENTBOX_PUBLIC_URL=" + public_url + "\n";
#endif
}

}  // namespace agentbox::ports_test
