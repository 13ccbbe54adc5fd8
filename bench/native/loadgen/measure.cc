// CPU and memory figures from /proc and getrusage (see measure.h).
#include "measure.h"

#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "clock.h"

namespace loadgen {

bool read_proc_cpu_ticks(long pid, uint64_t* ticks) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return false;
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  // Field 2 (comm) is in parentheses and may itself hold spaces or ')': skip to the last ')'.
  char* p = strrchr(buf, ')');
  if (p == nullptr) return false;
  p++;
  // Fields after comm start at field 3 (state); utime is field 14, stime field 15.
  unsigned long long utime = 0, stime = 0;
  int field = 2;
  char* save = nullptr;
  for (char* tok = strtok_r(p, " ", &save); tok != nullptr; tok = strtok_r(nullptr, " ", &save)) {
    field++;
    if (field == 14) utime = strtoull(tok, nullptr, 10);
    if (field == 15) {
      stime = strtoull(tok, nullptr, 10);
      *ticks = utime + stime;
      return true;
    }
  }
  return false;
}

bool read_proc_rss_bytes(long pid, uint64_t* bytes) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return false;
  char line[256];
  bool ok = false;
  while (fgets(line, sizeof line, f) != nullptr) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      *bytes = strtoull(line + 6, nullptr, 10) * 1024;
      ok = true;
      break;
    }
  }
  fclose(f);
  return ok;
}

double self_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double ticks_to_s(uint64_t ticks) { return static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK)); }

CpuWindow measure_cpu(const Options& o, uint64_t t_measure, uint64_t t_end) {
  CpuWindow w{o.server_pid > 0, 0, 0, 0, 0};
  sleep_until_ns(t_measure);
  if (w.srv_ok && !read_proc_cpu_ticks(o.server_pid, &w.srv0)) w.srv_ok = false;
  w.self0 = self_cpu_s();
  sleep_until_ns(t_end);
  if (w.srv_ok && !read_proc_cpu_ticks(o.server_pid, &w.srv1)) w.srv_ok = false;
  w.self1 = self_cpu_s();
  return w;
}

}  // namespace loadgen
