#include "redis.hpp"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "core/error.hpp"
#include "measurements.hpp"

namespace esper::bench {
namespace {

struct ReplyDeleter {
  void operator()(redisReply* r) const noexcept {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

Reply command(redisContext* c, const char* fmt, const std::string& a, const void* data, std::size_t len) {
  return Reply(static_cast<redisReply*>(redisCommand(c, fmt, a.c_str(), data, len)));
}

timeval to_timeval(std::chrono::milliseconds t) {
  return timeval{static_cast<time_t>(t.count() / 1000), static_cast<suseconds_t>((t.count() % 1000) * 1000)};
}

}  // namespace

RedisServer::RedisServer(const TempDir& dir) {
  port_ = free_tcp_port();
  socket_ = dir.path() + "/redis.sock";
  std::vector<std::string> args{ESPER_REDIS_SERVER, "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                "--unixsocket", socket_, "--unixsocketperm", "700", "--save", "", "--appendonly",
                                "no", "--daemonize", "no", "--dir", dir.path(), "--logfile", dir.path() + "/redis.log",
                                "--protected-mode", "yes"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw Error(std::string("cannot fork for ") + ESPER_REDIS_SERVER + ": " + std::strerror(errno));
  if (pid_ == 0) {
    // The server must not outlive the benchmark, even one that is killed.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  const auto until = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    try {
      RedisConnection c(unix_address(), std::chrono::milliseconds(200));
      RedisConnection t(tcp_address(), std::chrono::milliseconds(200));
      if (c.ping() && t.ping()) return;
    } catch (const Error&) {
      // not up yet
    }
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  throw Error("redis-server (pid " + std::to_string(pid_) + ") did not answer PING within 5 s");
}

RedisServer::~RedisServer() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const auto until = Clock::now() + std::chrono::seconds(3);
  int st = 0;
  while (::waitpid(pid_, &st, WNOHANG) != pid_) {
    if (Clock::now() >= until) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &st, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

RedisConnection::RedisConnection(const std::string& address, std::chrono::milliseconds timeout) {
  const auto tv = to_timeval(timeout);
  if (address.rfind("unix:", 0) == 0) {
    c_ = redisConnectUnixWithTimeout(address.substr(5).c_str(), tv);
  } else if (address.rfind("tcp:", 0) == 0) {
    const auto hostport = address.substr(4);
    const auto colon = hostport.rfind(':');
    c_ = redisConnectWithTimeout(hostport.substr(0, colon).c_str(), std::stoi(hostport.substr(colon + 1)), tv);
  } else {
    throw Error("redis address '" + address + "': use unix:PATH or tcp:HOST:PORT");
  }
  if (c_ == nullptr || c_->err != 0) {
    const std::string why = c_ ? c_->errstr : "out of memory";
    if (c_) redisFree(c_);
    c_ = nullptr;
    throw Error("cannot connect to redis at " + address + ": " + why);
  }
  const auto rw = to_timeval(std::chrono::seconds(10));
  redisSetTimeout(c_, rw);
}

RedisConnection::~RedisConnection() {
  if (c_) redisFree(c_);
}

bool RedisConnection::ping() {
  Reply r(static_cast<redisReply*>(redisCommand(c_, "PING")));
  return r && r->type == REDIS_REPLY_STATUS;
}

bool RedisConnection::del(const std::string& key) {
  Reply r(static_cast<redisReply*>(redisCommand(c_, "DEL %s", key.c_str())));
  return r && r->type == REDIS_REPLY_INTEGER;
}

bool RedisConnection::xadd(const std::string& key, const std::vector<std::uint8_t>& payload) {
  const auto r = command(c_, "XADD %s MAXLEN ~ 10000 * d %b", key, payload.data(), payload.size());
  return r && r->type == REDIS_REPLY_STRING;
}

int RedisConnection::xread(const std::string& key, std::string& last_id, int block_ms, int count,
                           std::vector<std::vector<std::uint8_t>>& out) {
  Reply r(static_cast<redisReply*>(redisCommand(c_, "XREAD COUNT %d BLOCK %d STREAMS %s %s", count, block_ms,
                                                key.c_str(), last_id.c_str())));
  if (!r || r->type == REDIS_REPLY_ERROR) return -1;
  if (r->type == REDIS_REPLY_NIL) return 0;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) return -1;
  // [[key, [[id, [field, value, ...]], ...]]]
  const auto* stream = r->element[0];
  if (stream->type != REDIS_REPLY_ARRAY || stream->elements != 2) return -1;
  const auto* entries = stream->element[1];
  int n = 0;
  for (std::size_t i = 0; i < entries->elements; ++i) {
    const auto* e = entries->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) return -1;
    last_id.assign(e->element[0]->str, e->element[0]->len);
    const auto* fields = e->element[1];
    for (std::size_t f = 0; f + 1 < fields->elements; f += 2) {
      if (fields->element[f]->len == 1 && fields->element[f]->str[0] == 'd') {
        const auto* v = fields->element[f + 1];
        out.emplace_back(reinterpret_cast<const std::uint8_t*>(v->str), reinterpret_cast<const std::uint8_t*>(v->str) + v->len);
      }
    }
    ++n;
  }
  return n;
}

// The rank side of the Redis baseline: blocking XREAD on <key>:cmd, answer each entry with an XADD
// of a result-sized payload carrying the command's sequence number on <key>:res.
int child_redis_rank(const Args& a) {
  ParentLink parent;
  RedisConnection c(a.str("--endpoint"));
  const std::string key = a.str("--key", "bench");
  const auto reply_bytes = static_cast<std::size_t>(a.num("--reply-bytes", 200));
  std::string last = "0-0";
  std::vector<std::uint8_t> reply(reply_bytes, 0x5a);
  std::uint64_t answered = 0;
  parent.say("ready");
  std::vector<std::vector<std::uint8_t>> got;
  while (!parent.stop()) {
    got.clear();
    const int n = c.xread(key + ":cmd", last, 100, 64, got);
    if (n < 0) return 1;
    for (const auto& g : got) {
      if (g.size() >= 8) std::memcpy(reply.data(), g.data(), 8);
      if (!c.xadd(key + ":res", reply)) return 1;
      ++answered;
    }
  }
  parent.say("done answered=" + std::to_string(answered));
  return 0;
}

}  // namespace esper::bench
