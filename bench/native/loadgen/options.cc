// Parsing the command line into Options (see options.h).
#include "options.h"

#include <errno.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace loadgen {

const char kUsage[] =
    "usage: netloop-loadgen --port P [--host 127.0.0.1] [--conns 100] [--inflight 4]\n"
    "                       [--size 64] [--duration 5] [--warmup 1] [--threads 1]\n"
    "                       [--server-pid PID] [--proto tcp|ws] [--msg-type binary|text]\n"
    "                       [--path /] [--host-header H] [--connect-concurrency 500]\n"
    "                       [--source-ips 127.0.0.1,127.0.0.2,...]\n"
    "       netloop-loadgen --hold --port P [--proto ws] [--conns N] [--duration 5] [--settle 2]\n"
    "                       [--ping-interval 0] [--connect-timeout 60] [--server-pid PID] [--barrier] ...\n"
    "       netloop-loadgen --rate R ...             (echo, open loop: R messages/s per connection)\n"
    "       netloop-loadgen --churn --port P [--proto tcp|ws] [--conns 50] [--duration 5] ...\n"
    "       netloop-loadgen --broadcast --port P --proto ws [--conns N] [--inflight 4] [--processes 1] ...\n"
    "       netloop-loadgen --tls [--tls-resume] [--tls-servername localhost] [--tls-max-version 1.2|1.3] ...\n"
    "                       (any mode over TLS: wss for --proto ws; --tls-resume resumes sessions)\n"
    "       netloop-loadgen --self-test\n"
    "Echo mode prints one JSON line with throughput, latency percentiles, errors and server CPU;\n"
    "--hold prints one JSON line with connect time, pings/pongs and the server's RSS per idle\n"
    "connection; with --barrier it prints {\"phase\":\"connected\",\"conns_ok\":N} once all are up and\n"
    "waits for a line on stdin before the settle. --self-test checks SHA-1, base64, the handshake\n"
    "and the frame codec, then exits.\n";

namespace {

bool parse_long(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool parse_double(const char* s, double lo, double hi, double* out) {
  char* end = nullptr;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) return false;
  *out = v;
  return true;
}

}  // namespace

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

std::string parse_options(int argc, char** argv, Options* o, bool* help) {
  *help = false;
  bool have_port = false;
  for (int i = 1; i < argc; i++) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      *help = true;
      return "";
    }
    // Flags without a value.
    if (flag == "--barrier") {
      o->barrier = true;
      continue;
    }
    if (flag == "--hold") {
      o->hold = true;
      continue;
    }
    if (flag == "--self-test") {
      o->self_test = true;
      continue;
    }
    if (flag == "--churn") {
      o->churn = true;
      continue;
    }
    if (flag == "--tls") {
      o->tls = true;
      continue;
    }
    if (flag == "--tls-resume") {
      o->tls_resume = true;
      continue;
    }
    if (flag == "--broadcast") {
      o->broadcast = true;
      continue;
    }
    if (i + 1 >= argc) return "missing value for " + flag;
    const char* v = argv[++i];
    long n = 0;
    bool ok = true;
    if (flag == "--host") {
      o->host = v;
    } else if (flag == "--port") {
      ok = parse_long(v, 1, 65535, &n);
      o->port = static_cast<int>(n);
      have_port = ok;
    } else if (flag == "--conns") {
      ok = parse_long(v, 1, 1000000, &n);
      o->conns = static_cast<int>(n);
    } else if (flag == "--processes") {
      ok = parse_long(v, 1, 64, &n);
      o->processes = static_cast<int>(n);
    } else if (flag == "--inflight") {
      ok = parse_long(v, 1, 1 << 20, &n);
      o->inflight = static_cast<int>(n);
    } else if (flag == "--size") {
      ok = parse_long(v, 1, 64L << 20, &n);
      o->size = static_cast<size_t>(n);
    } else if (flag == "--duration") {
      ok = parse_double(v, 0.001, 86400, &o->duration_s);
    } else if (flag == "--warmup") {
      ok = parse_double(v, 0, 86400, &o->warmup_s);
    } else if (flag == "--threads") {
      ok = parse_long(v, 1, 1024, &n);
      o->threads = static_cast<int>(n);
    } else if (flag == "--server-pid") {
      ok = parse_long(v, 1, 1L << 30, &n);
      o->server_pid = n;
    } else if (flag == "--proto") {
      o->proto = v;
    } else if (flag == "--msg-type") {
      o->msg_type = v;
      ok = o->msg_type == "binary" || o->msg_type == "text";
    } else if (flag == "--path") {
      o->path = v;
      ok = !o->path.empty() && o->path[0] == '/' && o->path.find_first_of(" \r\n") == std::string::npos;
    } else if (flag == "--host-header") {
      o->host_header = v;
      ok = !o->host_header.empty() && o->host_header.find_first_of(" \r\n") == std::string::npos;
    } else if (flag == "--connect-concurrency") {
      ok = parse_long(v, 1, 1000000, &n);
      o->connect_concurrency = static_cast<int>(n);
    } else if (flag == "--source-ips") {
      o->source_ips = split_commas(v);
      ok = !o->source_ips.empty();
    } else if (flag == "--connect-timeout") {
      ok = parse_double(v, 0.1, 86400, &o->connect_timeout_s);
    } else if (flag == "--rate") {
      ok = parse_double(v, 0, 1e7, &o->rate);
    } else if (flag == "--settle") {
      ok = parse_double(v, 0, 86400, &o->settle_s);
    } else if (flag == "--tls-servername") {
      o->tls_servername = v;
    } else if (flag == "--tls-max-version") {
      o->tls_max_version = v;
      ok = o->tls_max_version == "1.2" || o->tls_max_version == "1.3";
    } else if (flag == "--ping-interval") {
      ok = parse_double(v, 0, 86400, &o->ping_interval_s);
      ok = ok && (o->ping_interval_s == 0 || o->ping_interval_s >= 0.01);
    } else {
      return "unknown flag " + flag;
    }
    if (!ok) return "bad value for " + flag + ": " + v;
  }
  if (o->self_test) return "";
  if (!have_port) return "--port is required";
  if (o->ping_interval_s > 0 && !o->hold) return "--ping-interval needs --hold";
  if (o->barrier && !o->hold) return "--barrier needs --hold";
  if (o->ping_interval_s > 0 && o->proto != "ws") return "--ping-interval needs --proto ws";
  if ((o->hold ? 1 : 0) + (o->churn ? 1 : 0) + (o->broadcast ? 1 : 0) > 1) return "--hold, --churn and --broadcast exclude each other";
  if (o->rate > 0 && (o->hold || o->churn || o->broadcast)) return "--rate is for echo mode";
  if (o->broadcast && o->proto != "ws") return "--broadcast needs --proto ws (the server frames each message once for all)";
  if (o->tls_resume && !o->tls) return "--tls-resume needs --tls";
  if (o->processes > 1 && !o->broadcast) return "--processes is for --broadcast";
  if (o->processes > o->conns) return "--processes: more processes than connections";
  if (o->churn) o->inflight = 1;  // one message per connection
  if (o->threads > o->conns) o->threads = o->conns;
  return "";
}

}  // namespace loadgen
