#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>

namespace agentbox {

// Every thread that runs handlers or jobs (the daemon's io threads, worker pools, monitors) runs
// them through these. A handler that throws is a bug: outside input is read without exceptions
// (ValueOr, ParseUntrustedJson). But a bug reached by one sandbox's bad answer must not end the
// daemon, and with it every other sandbox's service: the exception is logged
// (`thread.exception`, with where it ran and what it said) and counted, and the thread goes on.
// The request the handler was serving gets no answer (its client's deadline ends it); state the
// handler held is released by unwinding.

// Runs `io` until it stops, catching and counting what its handlers throw (Asio allows run()
// again after a handler threw).
void RunGuarded(boost::asio::io_context& io, const char* where);

// Runs `fn` once, catching and counting what it throws.
void CallGuarded(const std::function<void()>& fn, const char* where);

// Exceptions caught by RunGuarded and CallGuarded since start (agentbox_handler_exceptions_total).
uint64_t CaughtHandlerExceptions();

}  // namespace agentbox
