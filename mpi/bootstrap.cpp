#include "mpi/bootstrap.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdlib>

#include "core/error.hpp"

namespace esper::mpi {

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(std::string(call) + " failed: " + std::string(text, static_cast<std::size_t>(len)));
}

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

Session::Session(int& argc, char**& argv) {
  int provided = 0;
  check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  check(MPI_Comm_rank(MPI_COMM_WORLD, &world_.rank), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &world_.size), "MPI_Comm_size");
  MPI_Comm local;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_.rank, MPI_INFO_NULL, &local),
        "MPI_Comm_split_type");
  MPI_Comm_rank(local, &world_.local_rank);
  MPI_Comm_size(local, &world_.local_size);
  MPI_Comm_free(&local);
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_Get_processor_name(name, &len);
  world_.node.assign(name, static_cast<std::size_t>(len));
  std::string job = env("SLURM_JOB_ID");
  if (job.empty()) job = env("OMPI_MCA_ess_base_jobid");
  if (job.empty()) job = env("PMIX_NAMESPACE");
  if (job.empty()) job = "local-" + std::to_string(::getpid());
  world_.job_id = broadcast(job, 0);  // rank 0's view wins: one id for the whole job
}

Session::~Session() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::vector<std::uint8_t> broadcast(const std::vector<std::uint8_t>& value, int root, MPI_Comm comm) {
  int me = 0;
  MPI_Comm_rank(comm, &me);
  std::uint64_t n = value.size();
  check(MPI_Bcast(&n, 1, MPI_UINT64_T, root, comm), "MPI_Bcast");
  std::vector<std::uint8_t> out = me == root ? value : std::vector<std::uint8_t>(n);
  if (n > 0) check(MPI_Bcast(out.data(), static_cast<int>(n), MPI_BYTE, root, comm), "MPI_Bcast");
  return out;
}

std::string broadcast(const std::string& value, int root, MPI_Comm comm) {
  const auto bytes = broadcast(std::vector<std::uint8_t>(value.begin(), value.end()), root, comm);
  return {bytes.begin(), bytes.end()};
}

std::string node_address() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    addrinfo* res = nullptr;
    if (::getaddrinfo(host, nullptr, &hints, &res) == 0) {
      std::string found;
      for (auto* p = res; p != nullptr && found.empty(); p = p->ai_next) {
        const auto* sin = reinterpret_cast<const sockaddr_in*>(p->ai_addr);
        char text[INET_ADDRSTRLEN];
        if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text) && std::string(text).rfind("127.", 0) != 0) {
          found = text;
        }
      }
      ::freeaddrinfo(res);
      if (!found.empty()) return found;
    }
  }
  ifaddrs* ifs = nullptr;
  std::string found = "127.0.0.1";
  if (::getifaddrs(&ifs) == 0) {
    for (auto* i = ifs; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
      char text[INET_ADDRSTRLEN];
      const auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text) && std::string(text).rfind("127.", 0) != 0) {
        found = text;
        break;
      }
    }
    ::freeifaddrs(ifs);
  }
  return found;
}

}  // namespace esper::mpi
