// An application built against an installed esper (tests/install/install_test.sh): a broker, one
// rank's node answering commands on its I/O thread, and a client, in one process over inproc. It
// sends a TransitionSeeds command to rank 0 and a subscriber sees the rank join; exits 0 when the
// rank's result came back OK, naming what failed otherwise.
#include <chrono>
#include <cstdio>
#include <thread>

#include "fabric/broker.hpp"
#include "fabric/client.hpp"
#include "fabric/node.hpp"
#include "wire/builders.hpp"

int main() {
  using namespace esper;
  using namespace std::chrono_literals;
  zmq::context_t ctx;
  fabric::Broker broker(ctx, fabric::BrokerOptions{.bind = "inproc://consumer"});
  fabric::NodeOptions no;
  no.rank = 0;
  no.layers = {0};
  no.immediate_handler = [](const fabric::IncomingCommand& in) {
    const auto* t = in.command.body_as_TransitionSeeds();
    return wire::command_result(t != nullptr ? wire::Status::OK : wire::Status::REJECTED, 0);
  };
  fabric::Node node(ctx, broker.endpoints().cmd, no);
  fabric::Client client(ctx, broker.endpoints().cmd);
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (client.routes().empty() && std::chrono::steady_clock::now() < until) (void)client.poll(10ms);
  if (client.routes().empty()) {
    std::fprintf(stderr, "consumer: rank 0 never joined the broker\n");
    return 1;
  }
  const auto out = client.call(wire::transition_seeds(wire::to_rank(0), 0, wire::seed_ids({1}),
                                                      wire::SeedState::GERMINATED, "from an installed esper"));
  if (out.targets.size() != 1 || !out.targets[0].has_result || out.targets[0].result.status != wire::Status::OK) {
    std::fprintf(stderr, "consumer: the command did not come back OK (%zu targets)\n", out.targets.size());
    return 1;
  }
  std::printf("consumer: rank 0 answered %s through esper %s\n", wire::EnumNameStatus(out.targets[0].result.status),
              ESPER_CONSUMER_VIA);
  return 0;
}
