#pragma once

// agentbox-gcp-emulator for the port suite's cloudrun-session daemon, as the conformance suite
// starts it (tests/conformance/conformance_fixture.h): a private emulator with one bucket whose
// executions run AGENTBOX_CLOUDRUN_IMAGE (default agentbox/base:latest) on the local Docker
// engine.

#include <curl/curl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace agentbox::ports_test {

inline size_t EmulatorSink(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

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
  *pid = fork();
  if (*pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    const std::string log = dir + "/emulator.log";
    FILE* f = freopen(log.c_str(), "a", stderr);
    (void)f;
    const std::string data = dir + "/emulator";
    execl(AGENTBOX_GCP_EMULATOR_BIN, AGENTBOX_GCP_EMULATOR_BIN, "--listen", "tcp:127.0.0.1:0",
          "--data", data.c_str(), "--volumes", "bind", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  std::string line;
  char c;
  while (line.find('\n') == std::string::npos && read(out[0], &c, 1) == 1) {
    line += c;
  }
  close(out[0]);
  const size_t at = line.find("http://");
  if (at == std::string::npos) {
    return "";
  }
  const std::string url = line.substr(at, line.find_first_of("\r\n", at) - at);
  CURL* h = curl_easy_init();
  std::string sink;
  curl_slist* hdr = curl_slist_append(nullptr, "Authorization: Bearer ports");
  hdr = curl_slist_append(hdr, "Content-Type: application/json");
  const std::string make = url + "/storage/v1/b?project=ports-project";
  curl_easy_setopt(h, CURLOPT_URL, make.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, R"({"name":"ports-bucket"})");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, EmulatorSink);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
  const CURLcode rc = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(hdr);
  curl_easy_cleanup(h);
  if (rc != CURLE_OK || status != 200) {
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
