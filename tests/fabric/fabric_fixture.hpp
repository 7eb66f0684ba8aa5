// Shared pieces of the fabric tests: private endpoints per transport, a broker, and a rank node
// served by its own thread.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <span>
#include <stdexcept>
#include <thread>

#include "fabric/broker.hpp"
#include "fabric/client.hpp"
#include "fabric/node.hpp"
#include "fabric/subscriber.hpp"
#include "wire/builders.hpp"

namespace esper::fabric::testing {

using namespace std::chrono_literals;

// A base address no other test (or test process running in parallel) uses.
inline std::string private_endpoint(const std::string& transport) {
  static std::atomic<int> counter{0};
  const std::string tag = std::to_string(::getpid()) + "-" + std::to_string(counter++);
  if (transport == "inproc") return "inproc://esper-test-" + tag;
  if (transport == "ipc") return "ipc://" + (std::filesystem::temp_directory_path() / ("esper-test-" + tag)).string();
  return "tcp://127.0.0.1:0";
}

// The tests' brokers answer a command for ranks that have not registered at once, as any broker
// does after its first join_grace; tests/fabric/restart_test.cpp covers the grace.
inline BrokerOptions broker_options(const std::string& transport) {
  BrokerOptions o;
  o.bind = private_endpoint(transport);
  o.join_grace = std::chrono::milliseconds(0);
  return o;
}

// The test nodes' heartbeat interval: 50 ms, or ESPER_TEST_HEARTBEAT_MS (the tsan preset sets 250:
// a node's thread under ThreadSanitizer on a loaded machine can stall past 2.5 intervals of 50 ms,
// and its rank would be declared lost mid-test).
inline std::chrono::milliseconds test_heartbeat() {
  const char* env = std::getenv("ESPER_TEST_HEARTBEAT_MS");
  return env != nullptr && std::atoi(env) > 0 ? std::chrono::milliseconds(std::atoi(env)) : 50ms;
}

inline NodeOptions node_options(std::int32_t rank, std::vector<std::uint32_t> layers = {0}) {
  NodeOptions o;
  o.rank = rank;
  o.layers = std::move(layers);
  o.heartbeat_interval = test_heartbeat();
  o.telemetry_window = 20ms;
  return o;
}

// Polls `done` until it holds or the timeout passes: for state another thread moves that has no
// notification to wait on (counters, the broker's live ranks). The 2 ms between checks is the poll
// interval, not a guess at how long the other thread takes.
inline bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 5s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// Waits until the broker has seen a heartbeat from `n` ranks.
inline bool wait_for_ranks(const Broker& b, std::size_t n, std::chrono::milliseconds timeout = 5s) {
  return eventually([&] { return b.live_ranks().size() >= n; }, timeout);
}

// A publisher that speaks to the broker's pub endpoint directly, as anyone who reaches it can: an
// XPUB, so that the broker's subscription (sent as soon as the connection is up) says when
// publications reach it — the constructor returns once it has.
class RawPublisher {
 public:
  RawPublisher(zmq::context_t& ctx, const std::string& endpoint, std::chrono::milliseconds timeout = 10s)
      : pub_(ctx, zmq::socket_type::xpub) {
    pub_.set(zmq::sockopt::linger, 0);
    pub_.connect(endpoint);
    zmq::pollitem_t item{pub_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) == 0) throw std::runtime_error("the broker did not subscribe");
    zmq::message_t subscription;
    (void)pub_.recv(subscription);
  }
  // [topic][meta: sequence, records][envelope]
  void publish(const std::string& topic, std::uint64_t sequence, std::span<const std::uint8_t> envelope,
               std::uint32_t records = 1) {
    pub_.send(zmq::buffer(topic), zmq::send_flags::sndmore);
    pub_.send(encode_meta(Meta{.sequence = sequence, .records = records}), zmq::send_flags::sndmore);
    pub_.send(zmq::buffer(envelope.data(), envelope.size()), zmq::send_flags::none);
  }
  zmq::socket_t& socket() { return pub_; }

 private:
  zmq::socket_t pub_;
};

// Which way a test's client sends commands: straight to the ranks (the default, once the broker's
// route table has arrived) or through the broker.
enum class Path { Direct, Broker };
inline const char* name(Path p) { return p == Path::Direct ? "direct" : "broker"; }
inline void PrintTo(Path p, std::ostream* os) { *os << name(p); }

inline ClientOptions client_options(Path p, ClientOptions o = {}) {
  o.direct = p == Path::Direct;
  return o;
}

// For the direct path, polls the client until its route table reaches `ranks` ranks directly, so
// that the next command goes straight to them. True at once for the broker path.
inline bool ready(Client& c, Path p, std::size_t ranks, std::chrono::milliseconds timeout = 5s) {
  if (p == Path::Broker) return true;
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto routes = c.routes();
    const auto direct = std::count_if(routes.begin(), routes.end(), [](const Route& r) { return r.direct; });
    if (c.has_routes() && static_cast<std::size_t>(direct) >= ranks) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    (void)c.poll(5ms);
  }
}

// A node whose commands are handled by a thread of its own.
class ServedNode {
 public:
  using Handler = Node::Handler;
  ServedNode(zmq::context_t& ctx, const std::string& broker, NodeOptions o, Handler handler)
      : node_(ctx, broker, std::move(o)), handler_(std::move(handler)), thread_([this] {
          while (!stop_) {
            if (node_.wait_for_command(10ms)) node_.poll_commands(handler_);
          }
        }) {}
  ~ServedNode() {
    stop_ = true;
    thread_.join();
  }
  Node& node() { return node_; }

 private:
  Node node_;
  Handler handler_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

inline Node::Handler ok_handler(std::int32_t rank, std::atomic<int>* applied = nullptr) {
  return [rank, applied](const IncomingCommand&) {
    if (applied) ++*applied;
    return wire::command_result(wire::Status::OK, rank);
  };
}

}  // namespace esper::fabric::testing
