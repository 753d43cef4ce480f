#pragma once

// A certificate authority and a server certificate made at test time with OpenSSL (nothing is
// committed): for the TLS listen addresses of agentboxd and the guest's wss:// tunnel.

#include <string>
#include <vector>

#include "common/error.h"

namespace agentbox::fakes {

struct TestCa {
  std::string cert_file;  // PEM CA certificate (what --ca-file gets)
  std::string key_file;   // PEM private key of the CA
};

// Writes a fresh self-signed CA (P-256, valid for a day) as `<dir>/<name>.crt` and `.key`.
Result<TestCa> MakeTestCa(const std::string& dir, const std::string& name);

struct TestServerCert {
  std::string cert_file;  // PEM server certificate signed by the CA
  std::string key_file;   // PEM private key
};

// Writes a server certificate signed by `ca` whose subjectAltName lists `ips` (IP entries) and
// `dns` (DNS entries), as `<dir>/<name>.crt` and `.key`.
Result<TestServerCert> MakeTestServerCert(const TestCa& ca, const std::string& dir,
                                          const std::string& name,
                                          const std::vector<std::string>& ips,
                                          const std::vector<std::string>& dns);

}  // namespace agentbox::fakes
