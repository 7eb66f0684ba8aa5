#include "fabric/framing.hpp"

#include <ifaddrs.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstring>

#include "core/error.hpp"

namespace esper::fabric {

Endpoints bind_addresses(const std::string& base) {
  const auto scheme_end = base.find("://");
  if (scheme_end == std::string::npos) {
    throw Error("endpoint '" + base + "' has no transport: use tcp://HOST:PORT, ipc://PATH or inproc://NAME");
  }
  const std::string scheme = base.substr(0, scheme_end);
  if (scheme == "tcp") {
    const auto colon = base.rfind(':');
    if (colon == std::string::npos || colon < scheme_end + 3) {
      throw Error("tcp endpoint '" + base + "' needs a port: tcp://HOST:PORT (port 0 picks a free one)");
    }
    const std::string host = base.substr(0, colon);
    const std::string port_text = base.substr(colon + 1);
    unsigned long port = 0;
    try {
      std::size_t used = 0;
      port = std::stoul(port_text, &used);
      if (used != port_text.size()) throw std::invalid_argument(port_text);
    } catch (const std::exception&) {
      throw Error("tcp endpoint '" + base + "': the port '" + port_text + "' is not a number");
    }
    if (port == 0) return {base, host + ":0", host + ":0", host + ":0"};
    if (port > 65535 - 3) {
      throw Error("tcp endpoint '" + base + "': the broker takes the port and the three after it (pub, sub, evt), so it "
                  "must be at most 65532");
    }
    const auto at = [&](unsigned long offset) { return host + ":" + std::to_string(port + offset); };
    return {base, at(1), at(2), at(3)};
  }
  if (scheme == "ipc" || scheme == "inproc") return {base + ".cmd", base + ".pub", base + ".sub", base + ".evt"};
  throw Error("endpoint '" + base + "': transport '" + scheme + "' is not supported (tcp, ipc, inproc)");
}

std::string connectable(const std::string& reported, const std::string& cmd_endpoint_used) {
  if (reported.rfind("tcp://", 0) != 0 || cmd_endpoint_used.rfind("tcp://", 0) != 0) return reported;
  const auto port = reported.substr(reported.rfind(':'));
  const auto host_end = cmd_endpoint_used.rfind(':');
  return cmd_endpoint_used.substr(0, host_end) + port;
}

namespace {

// The HOST of tcp://HOST:PORT as written (IPv6 in brackets).
std::string tcp_host(const std::string& endpoint) { return endpoint.substr(6, endpoint.rfind(':') - 6); }

// Names and literals of the loopback interface, IPv6 brackets removed.
bool loopback_name(std::string host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace

std::string direct_bind_address(const std::string& broker, std::int32_t rank, std::uint64_t unique) {
  const auto scheme = scheme_of(broker);
  const std::string tag = ".rank" + std::to_string(rank) + "-" + std::to_string(unique);
  if (scheme == "inproc" || scheme == "ipc") {
    // The broker's command endpoint is BASE.cmd (bind_addresses): put ours beside it.
    auto base = broker;
    if (base.size() > 4 && base.compare(base.size() - 4, 4, ".cmd") == 0) base.resize(base.size() - 4);
    return base + tag;
  }
  if (scheme == "tcp") {
    const auto host = tcp_host(broker);
    return "tcp://" + (loopback_name(host) ? host : std::string("0.0.0.0")) + ":0";
  }
  return {};
}

bool endpoint_on_this_host(const std::string& endpoint) {
  if (scheme_of(endpoint) != "tcp") return true;
  auto host = tcp_host(endpoint);
  if (loopback_name(host) || host == "*" || host == "0.0.0.0" || host == "[::]") return true;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) return false;
  ifaddrs* ifs = nullptr;
  bool local = false;
  if (::getifaddrs(&ifs) == 0) {
    for (auto* r = res; r != nullptr && !local; r = r->ai_next) {
      if (r->ai_family == AF_INET) {  // 127.0.0.0/8 (e.g. Debian's 127.0.1.1 for the host name) is loopback
        local = (ntohl(reinterpret_cast<const sockaddr_in*>(r->ai_addr)->sin_addr.s_addr) >> 24) == 127;
      } else if (r->ai_family == AF_INET6) {
        local = IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(r->ai_addr)->sin6_addr);
      }
      for (auto* i = ifs; i != nullptr && !local; i = i->ifa_next) {
        if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != r->ai_family) continue;
        if (r->ai_family == AF_INET) {
          local = reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr ==
                  reinterpret_cast<const sockaddr_in*>(r->ai_addr)->sin_addr.s_addr;
        } else if (r->ai_family == AF_INET6) {
          local = std::memcmp(&reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr,
                              &reinterpret_cast<const sockaddr_in6*>(r->ai_addr)->sin6_addr, sizeof(in6_addr)) == 0;
        }
      }
    }
    ::freeifaddrs(ifs);
  }
  ::freeaddrinfo(res);
  return local;
}

void remove_ipc_file(const std::string& endpoint) noexcept {
  constexpr std::string_view ipc = "ipc://";
  if (endpoint.size() > ipc.size() && endpoint.compare(0, ipc.size(), ipc) == 0 && endpoint[ipc.size()] != '@') {
    (void)::unlink(endpoint.c_str() + ipc.size());  // '@': an abstract socket has no file
  }
}

Endpoints ask_endpoints(zmq::socket_t& dealer, const std::string& broker, std::chrono::milliseconds timeout) {
  dealer.send(type_frame(frame::kInfo), zmq::send_flags::sndmore);
  dealer.send(zmq::buffer(&kInfoWithEvents, 1), zmq::send_flags::none);
  zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) == 0) {
    throw Error("broker at " + broker + " did not answer within " + std::to_string(timeout.count()) +
                " ms (is it running, and is the address its command endpoint?)");
  }
  std::vector<zmq::message_t> info;
  (void)zmq::recv_multipart(dealer, std::back_inserter(info));
  if ((info.size() != 3 && info.size() != 4) || type_of(info[0]) != frame::kInfo) {
    throw Error("broker at " + broker + " sent an unexpected reply to the info request");
  }
  const auto sub = connectable(info[2].to_string(), broker);
  return {broker, connectable(info[1].to_string(), broker), sub,
          info.size() == 4 ? connectable(info[3].to_string(), broker) : sub};
}

std::string this_host() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return {};
  return name;
}

void bind_or_throw(zmq::socket_t& s, const std::string& endpoint) {
  try {
    s.bind(endpoint);
  } catch (const zmq::error_t& e) {
    throw Error("cannot bind " + endpoint + ": " + e.what());
  }
}

void connect_or_throw(zmq::socket_t& s, const std::string& endpoint) {
  try {
    s.connect(endpoint);
  } catch (const zmq::error_t& e) {
    throw Error("cannot connect to " + endpoint + ": " + e.what());
  }
}

}  // namespace esper::fabric
