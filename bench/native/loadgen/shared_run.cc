// The broadcast mode's shared mapping (see shared_run.h).
#include "shared_run.h"

#include <sys/mman.h>

#include <algorithm>
#include <new>

namespace loadgen {

namespace {

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

}  // namespace

SharedRun map_shared_run(size_t window, int processes) {
  const size_t a = alignof(std::max_align_t);
  const size_t sync_at = 0;
  const size_t bc_at = round_up(sync_at + sizeof(PhaseSync), a);
  const size_t slots_at = round_up(bc_at + sizeof(Broadcast), a);
  const size_t results_at = round_up(slots_at + 3 * window * sizeof(std::atomic<uint64_t>), a);
  const size_t bytes = results_at + static_cast<size_t>(std::max(processes - 1, 0)) * sizeof(ProcResult);
  SharedRun r{nullptr, nullptr, nullptr, nullptr, bytes};
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return r;
  char* base = static_cast<char*>(p);  // zero-filled by mmap
  auto* slots = reinterpret_cast<std::atomic<uint64_t>*>(base + slots_at);
  for (size_t i = 0; i < 3 * window; i++) new (slots + i) std::atomic<uint64_t>(0);
  r.base = p;
  r.sync = new (base + sync_at) PhaseSync();
  r.bc = new (base + bc_at) Broadcast(window, slots);
  r.results = reinterpret_cast<ProcResult*>(base + results_at);
  return r;
}

void unmap_shared_run(SharedRun& r) {
  if (r.base != nullptr) munmap(r.base, r.bytes);
  r.base = nullptr;
}

void save_result(const Stats& s, double cpu_s, ProcResult* out) {
  out->messages = s.messages;
  out->errors = s.errors;
  out->verify_failures = s.verify_failures;
  out->handshake_failures = s.handshake_failures;
  out->conns_ok = s.conns_ok;
  out->connect_retries = s.connect_retries;
  out->upgraded = s.upgraded;
  out->last_ready_ns = s.last_ready_ns;
  out->broadcasts = s.broadcasts;
  out->cpu_s = cpu_s;
  s.hist.save(out->hist);
  s.fanout.save(out->fanout);
}

void add_result(const ProcResult& r, Stats* t) {
  t->messages += r.messages;
  t->errors += r.errors;
  t->verify_failures += r.verify_failures;
  t->handshake_failures += r.handshake_failures;
  t->conns_ok += r.conns_ok;
  t->connect_retries += r.connect_retries;
  t->upgraded += r.upgraded;
  t->last_ready_ns = std::max(t->last_ready_ns, r.last_ready_ns);
  t->broadcasts += r.broadcasts;
  t->hist.merge_saved(r.hist);
  t->fanout.merge_saved(r.fanout);
}

}  // namespace loadgen
