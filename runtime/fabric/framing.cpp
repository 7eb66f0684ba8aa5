#include "fabric/framing.hpp"

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
    return {base, host + ":0", host + ":0"};
  }
  if (scheme == "ipc" || scheme == "inproc") return {base + ".cmd", base + ".pub", base + ".sub"};
  throw Error("endpoint '" + base + "': transport '" + scheme + "' is not supported (tcp, ipc, inproc)");
}

std::string connectable(const std::string& reported, const std::string& cmd_endpoint_used) {
  if (reported.rfind("tcp://", 0) != 0 || cmd_endpoint_used.rfind("tcp://", 0) != 0) return reported;
  const auto port = reported.substr(reported.rfind(':'));
  const auto host_end = cmd_endpoint_used.rfind(':');
  return cmd_endpoint_used.substr(0, host_end) + port;
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
