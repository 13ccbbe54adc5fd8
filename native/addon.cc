// The host: binds one Loop to the libuv loop of the JS thread that owns it,
// and exposes it to lib/native.ts as the class EngineHandle.
//
// Non-blocking I/O path: libuv watches the poller's own descriptor (a uv_poll_t
// on the epoll/kqueue fd). When it is readable, Loop::Poll() runs one bounded
// iteration with a zero timeout and the resulting records go to JS in one
// MakeCallback (so microtasks and nextTicks run inside the batch, their writes
// still corked). JS answers through flush(): one call per batch with a
// command array. No thread hop and no JS call per event.
//
// Arguments are validated in lib/ (the friendly layer); the methods here only
// guard against what would be undefined behaviour, and throw TypeError then.
#include <napi.h>
#include <uv.h>
#include <v8.h>

#include <cerrno>
#include <cstring>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "loop.h"
#include "mask.h"

namespace netloop {
namespace {

// A stalled consumer cannot make one wake-up deliver forever: after this many
// record rounds the rest waits for the idle handle (next loop turn).
constexpr int kMaxDispatchRounds = 64;

// TLS contexts cross to JS as tagged wrapper objects (a finalizer drops
// JS's reference); the tag makes sure an argument really is one of ours.
const napi_type_tag kTlsContextTag = {0x6e65746c6f6f7074ULL, 0x746c73637478ULL};

SSL_CTX* TlsContextArg(Napi::Value v) {
  if (!v.IsObject()) return nullptr;
  bool ours = false;
  if (napi_check_object_type_tag(v.Env(), v, &kTlsContextTag, &ours) != napi_ok || !ours) return nullptr;
  void* data = nullptr;
  if (napi_unwrap(v.Env(), v, &data) != napi_ok) return nullptr;
  return static_cast<SSL_CTX*>(data);
}

class EngineHandle : public Napi::ObjectWrap<EngineHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit EngineHandle(const Napi::CallbackInfo& info);
  ~EngineHandle() override;

 private:
  enum class State { kCreated, kRunning, kStopping, kClosed };

  // JS methods.
  Napi::Value Listen(const Napi::CallbackInfo& info);
  Napi::Value ListenUnix(const Napi::CallbackInfo& info);
  Napi::Value ListenerAddress(const Napi::CallbackInfo& info);
  Napi::Value Dial(const Napi::CallbackInfo& info);
  Napi::Value DialUnix(const Napi::CallbackInfo& info);
  Napi::Value Adopt(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Flush(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Queued(const Napi::CallbackInfo& info);
  Napi::Value Address(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value SetRef(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value CloseListeners(const Napi::CallbackInfo& info);
  Napi::Value SetListenerTls(const Napi::CallbackInfo& info);
  Napi::Value TlsInfo(const Napi::CallbackInfo& info);

  // libuv callbacks.
  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnTimer(uv_timer_t* handle);
  static void OnIdle(uv_idle_t* handle);
  static void OnAsync(uv_async_t* handle);
  // Called by reader threads (blocking mode): wakes this thread's loop.
  static void WakeFromReader(void* arg);
  static void OnHandleClosed(uv_handle_t* handle);
  static void OnEnvCleanup(napi_async_cleanup_hook_handle hook, void* arg);

  // Hands every pending record to JS, in as few calls as the records array
  // allows, then re-arms the idle handle and the deadline timer.
  void Dispatch();
  void AfterExternalChange();
  void RearmTimer();
  void CloseHandles();
  void FinishClose();
  Napi::Value AddressArray(Napi::Env env, int r, const AddressInfo& a);
  Napi::Value DialResult(Napi::Env env, int r, uint32_t slot, uint32_t gen);

  Loop loop_;
  State state_ = State::kCreated;
  uv_loop_t* uv_ = nullptr;
  uv_poll_t poll_;
  uv_timer_t timer_;
  uv_idle_t idle_;
  uv_async_t async_;  // reader threads' wake-up (blocking mode)
  int open_handles_ = 0;
  bool dispatching_ = false;
  bool idle_active_ = false;
  bool env_teardown_ = false;
  int64_t timer_armed_ms_ = -2;  // the delay the timer was last armed with, -1 stopped
  napi_async_cleanup_hook_handle cleanup_hook_ = nullptr;

  Napi::FunctionReference on_batch_;
  Napi::FunctionReference on_closed_;
  Napi::ObjectReference arrays_;  // keeps the shared arrays alive
  int32_t* records_ = nullptr;
  size_t records_cap_ = 0;  // in records
  const int32_t* cmds_ = nullptr;
  size_t cmds_cap_ = 0;  // in commands
  const uint8_t* out_ = nullptr;
  size_t out_len_ = 0;
  std::vector<iovec> refs_;
  napi_async_context async_context_ = nullptr;
};

template <typename T>
bool GetTypedArray(napi_env env, napi_value v, napi_typedarray_type type, T** data, size_t* len) {
  // One napi_get_typedarray_info gives the type, the length and the data
  // already offset: the Napi::TypedArray accessors make a call for each, and
  // this runs on every unmasking call (maskCopy) and every zero-copy write.
  // A value that is not a typed array makes it fail without throwing.
  napi_typedarray_type actual;
  size_t length = 0;
  void* base = nullptr;
  if (napi_get_typedarray_info(env, v, &actual, &length, &base, nullptr, nullptr) != napi_ok || actual != type) {
    return false;
  }
  *data = static_cast<T*>(base);
  *len = length;
  return true;
}

template <typename T>
bool GetTypedArray(Napi::Value v, napi_typedarray_type type, T** data, size_t* len) {
  return GetTypedArray(v.Env(), static_cast<napi_value>(v), type, data, len);
}

uint32_t NumberField(Napi::Object o, const char* name, uint32_t fallback) {
  Napi::Value v = o.Get(name);
  if (!v.IsNumber()) return fallback;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 4294967295.0) return fallback;
  return static_cast<uint32_t>(d);
}

// A port argument: an integer from 0 to 65535, else -1 (NaN would otherwise
// become port 0, "any port").
int PortArg(Napi::Value v) {
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 65535) || d != static_cast<double>(static_cast<int>(d))) return -1;
  return static_cast<int>(d);
}

// The edge between the C library and the rest: true if free heap memory
// was handed back to the system.
bool TrimAllocator() {
#if defined(__GLIBC__)
  return malloc_trim(0) != 0;
#else
  return false;
#endif
}

Napi::Value ThrowType(Napi::Env env, const char* msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Function EngineHandle::Define(Napi::Env env) {
  return DefineClass(env, "EngineHandle",
                     {
                         InstanceMethod("listen", &EngineHandle::Listen),
                         InstanceMethod("listenUnix", &EngineHandle::ListenUnix),
                         InstanceMethod("listenerAddress", &EngineHandle::ListenerAddress),
                         InstanceMethod("dial", &EngineHandle::Dial),
                         InstanceMethod("dialUnix", &EngineHandle::DialUnix),
                         InstanceMethod("adopt", &EngineHandle::Adopt),
                         InstanceMethod("start", &EngineHandle::Start),
                         InstanceMethod("flush", &EngineHandle::Flush),
                         InstanceMethod("stop", &EngineHandle::Stop),
                         InstanceMethod("queued", &EngineHandle::Queued),
                         InstanceMethod("address", &EngineHandle::Address),
                         InstanceMethod("stats", &EngineHandle::Stats),
                         InstanceMethod("setRef", &EngineHandle::SetRef),
                         InstanceMethod("destroy", &EngineHandle::Destroy),
                         InstanceMethod("closeListeners", &EngineHandle::CloseListeners),
                         InstanceMethod("setListenerTls", &EngineHandle::SetListenerTls),
                         InstanceMethod("tlsInfo", &EngineHandle::TlsInfo),
                     });
}

// new EngineHandle(config, arrays, onBatch)
//   config: { maxEvents, readBudget, acceptBudget, maxWriteBufferSize, closeTimeout, noDelay, maxLoad }
//   arrays: { records: Int32Array, slab: Buffer, cmds: Int32Array, out: Buffer, meter?: Float64Array(2) }
//   (without a meter, memoryBudget counts the write queues alone)
EngineHandle::EngineHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineHandle>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsObject() || !info[2].IsFunction()) {
    ThrowType(env, "EngineHandle(config, arrays, onBatch): wrong arguments");
    return;
  }
  Napi::Object config = info[0].As<Napi::Object>();
  Napi::Object arrays = info[1].As<Napi::Object>();
  uint8_t* slab = nullptr;
  size_t slab_len = 0, records_len = 0, cmds_len = 0, meter_len = 0;
  double* meter = nullptr;
  int32_t* cmds = nullptr;
  uint8_t* out = nullptr;
  if (!GetTypedArray(arrays.Get("records"), napi_int32_array, &records_, &records_len) ||
      !GetTypedArray(arrays.Get("slab"), napi_uint8_array, &slab, &slab_len) ||
      !GetTypedArray(arrays.Get("cmds"), napi_int32_array, &cmds, &cmds_len) ||
      !GetTypedArray(arrays.Get("out"), napi_uint8_array, &out, &out_len_) ||
      (!arrays.Get("meter").IsUndefined() &&
       (!GetTypedArray(arrays.Get("meter"), napi_float64_array, &meter, &meter_len) || meter_len < kMeterLength))) {
    ThrowType(env,
              "EngineHandle: arrays must be { records: Int32Array, slab: Uint8Array, cmds: Int32Array, out: Uint8Array, "
              "meter?: Float64Array(2) }");
    return;
  }
  records_cap_ = records_len / kRecordInts;
  cmds_ = cmds;
  cmds_cap_ = cmds_len / kRecordInts;
  out_ = out;
  if (records_cap_ == 0 || cmds_cap_ == 0 || slab_len == 0) {
    ThrowType(env, "EngineHandle: arrays must not be empty");
    return;
  }
  arrays_ = Napi::Persistent(arrays);
  on_batch_ = Napi::Persistent(info[2].As<Napi::Function>());

  LoopConfig lc;
  lc.max_events = static_cast<int>(NumberField(config, "maxEvents", 1024));
  lc.read_budget = NumberField(config, "readBudget", 64 * 1024);
  lc.accept_budget = static_cast<int>(NumberField(config, "acceptBudget", 256));
  lc.max_write_buffer = NumberField(config, "maxWriteBufferSize", 64u * 1024 * 1024);
  lc.write_high_water = NumberField(config, "writeHighWaterMark", 1024 * 1024);
  lc.write_low_water = NumberField(config, "writeLowWaterMark", 256 * 1024);
  {
    // Past 4 GiB: a number, not a uint32 field.
    Napi::Value b = config.Get("memoryBudget");
    double d = b.IsNumber() ? b.As<Napi::Number>().DoubleValue() : 0;
    lc.memory_budget = d >= 1 && d < 9.0e15 ? static_cast<uint64_t>(d) : 0;
  }
  lc.close_timeout_ms = static_cast<int>(NumberField(config, "closeTimeout", 5000));
  lc.max_load = NumberField(config, "maxLoad", 1000000);
  lc.no_delay = config.Get("noDelay").ToBoolean().Value();
  lc.io_mode = static_cast<int>(NumberField(config, "ioMode", kIoNonBlocking));
  if (lc.io_mode != kIoBlocking && lc.io_mode != kIoMixed) lc.io_mode = kIoNonBlocking;
  lc.max_blocking_online = NumberField(config, "maxBlockingOnline", 1000);
  lc.reader_stack_size = NumberField(config, "readerStackSize", 64 * 1024);
  lc.reader_buffer_size = NumberField(config, "readerBufferSize", 16 * 1024);
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer's redzones and its own frames need far more stack.
  if (lc.reader_stack_size < 1024 * 1024) lc.reader_stack_size = 1024 * 1024;
#endif
  lc.tls_handshake_timeout_ms = static_cast<int>(NumberField(config, "tlsHandshakeTimeout", 10000));
  lc.tls_max_handshake_bytes = NumberField(config, "tlsMaxHandshakeSize", 64 * 1024);
  if (lc.read_budget == 0) lc.read_budget = 64 * 1024;
  if (lc.accept_budget <= 0) lc.accept_budget = 256;

  int r = loop_.Open(lc, slab, slab_len, meter, &EngineHandle::WakeFromReader, this);
  if (r < 0) {
    Napi::Error e = Napi::Error::New(env, std::string("netloop: cannot open the poller: ") + std::strerror(-r));
    e.Set("errno", Napi::Number::New(env, -r));
    e.ThrowAsJavaScriptException();
    return;
  }
  napi_status s = napi_get_uv_event_loop(env, &uv_);
  if (s != napi_ok || uv_ == nullptr) {
    Napi::Error::New(env, "netloop: no libuv loop for this environment").ThrowAsJavaScriptException();
    return;
  }
  napi_async_init(env, Value(), Napi::String::New(env, "netloop:batch"), &async_context_);
}

EngineHandle::~EngineHandle() {
  // Reached only when no libuv handle is open (a running engine holds a strong
  // reference to itself until its handles have closed).
  loop_.Close();
  if (async_context_ != nullptr) napi_async_destroy(Env(), async_context_);
}

// ---------------------------------------------------------------------------
// Listening and dialing

Napi::Value EngineHandle::Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) {
    return ThrowType(env, "listen(host, port, backlog, reusePort)");
  }
  std::string host = info[0].As<Napi::String>().Utf8Value();
  int r = loop_.ListenInet(host.c_str(), PortArg(info[1]),
                           info[2].As<Napi::Number>().Int32Value(), info[3].ToBoolean().Value());
  return Napi::Number::New(env, r);
}

Napi::Value EngineHandle::ListenUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    return ThrowType(env, "listenUnix(path, backlog)");
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int r = loop_.ListenUnix(path.c_str(), info[1].As<Napi::Number>().Int32Value());
  return Napi::Number::New(env, r);
}

Napi::Value EngineHandle::AddressArray(Napi::Env env, int r, const AddressInfo& a) {
  if (r < 0) return Napi::Number::New(env, r);
  Napi::Array out = Napi::Array::New(env, 3);
  const char* family = a.family == AF_INET ? "IPv4" : a.family == AF_INET6 ? "IPv6" : "unix";
  out.Set(0u, Napi::String::New(env, family));
  out.Set(1u, Napi::String::New(env, a.host));
  out.Set(2u, Napi::Number::New(env, a.port));
  return out;
}

Napi::Value EngineHandle::ListenerAddress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return ThrowType(env, "listenerAddress(id)");
  AddressInfo a;
  int r = loop_.ListenerAddress(info[0].As<Napi::Number>().Int32Value(), &a);
  return AddressArray(env, r, a);
}

Napi::Value EngineHandle::DialResult(Napi::Env env, int r, uint32_t slot, uint32_t gen) {
  if (r < 0) return Napi::Number::New(env, r);
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, slot));
  out.Set(1u, Napi::Number::New(env, static_cast<int32_t>(gen)));
  AfterExternalChange();  // a unix connect may complete at once: deliver its OPEN
  return out;
}

// The TLS arguments of dial/dialUnix: (ctx, servername) at index i, or
// none. *tls is the new connection's state; false after a thrown TypeError.
bool DialTlsArgs(const Napi::CallbackInfo& info, size_t i, TlsOutput* output, TlsConn** tls) {
  *tls = nullptr;
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return true;
  SSL_CTX* ctx = TlsContextArg(info[i]);
  if (ctx == nullptr || (info.Length() > i + 1 && !info[i + 1].IsString() && !info[i + 1].IsUndefined())) {
    ThrowType(info.Env(), "dial: tls must be a context from createTlsContext(), servername a string");
    return false;
  }
  std::string servername = info.Length() > i + 1 && info[i + 1].IsString() ? info[i + 1].As<Napi::String>().Utf8Value() : "";
  std::string error;
  *tls = TlsConn::New(ctx, false, servername, output, &error);
  if (*tls == nullptr) {
    Napi::Error::New(info.Env(), "netloop: TLS: " + error).ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// dial(host, port, timeoutMs, tlsContext?, servername?)
Napi::Value EngineHandle::Dial(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) {
    return ThrowType(env, "dial(host, port, timeoutMs, tlsContext?, servername?)");
  }
  if (state_ != State::kRunning) return Napi::Number::New(env, -EBADF);
  TlsConn* tls = nullptr;
  if (!DialTlsArgs(info, 3, loop_.tls_output(), &tls)) return env.Undefined();
  std::string host = info[0].As<Napi::String>().Utf8Value();
  uint32_t slot = 0, gen = 0;
  int r = loop_.DialInet(host.c_str(), PortArg(info[1]),
                         info[2].As<Napi::Number>().Int32Value(), &slot, &gen, tls);
  return DialResult(env, r, slot, gen);
}

// dialUnix(path, timeoutMs, tlsContext?, servername?)
Napi::Value EngineHandle::DialUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    return ThrowType(env, "dialUnix(path, timeoutMs, tlsContext?, servername?)");
  }
  if (state_ != State::kRunning) return Napi::Number::New(env, -EBADF);
  TlsConn* tls = nullptr;
  if (!DialTlsArgs(info, 2, loop_.tls_output(), &tls)) return env.Undefined();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  uint32_t slot = 0, gen = 0;
  int r = loop_.DialUnix(path.c_str(), info[1].As<Napi::Number>().Int32Value(), &slot, &gen, tls);
  return DialResult(env, r, slot, gen);
}

// adopt(fd) -> [slot, gen] | -errno: takes over a connected socket that
// Node's libuv holds (lib/adopt.ts); its OPEN record (listener -2) follows.
// fd is duplicated: the caller closes its own descriptor afterwards.
Napi::Value EngineHandle::Adopt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return ThrowType(env, "adopt(fd)");
  if (state_ != State::kRunning) return Napi::Number::New(env, -EBADF);
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int>(d))) {
    return Napi::Number::New(env, -EBADF);
  }
  uint32_t slot = 0, gen = 0;
  int r = loop_.Adopt(static_cast<int>(d), &slot, &gen);
  return DialResult(env, r, slot, gen);
}

// ---------------------------------------------------------------------------
// Running

Napi::Value EngineHandle::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (state_ != State::kCreated) return ThrowType(env, "start(): the engine was already started");
  int r = uv_poll_init(uv_, &poll_, loop_.poller_fd());
  if (r < 0) return Napi::Number::New(env, r);
  uv_timer_init(uv_, &timer_);
  uv_idle_init(uv_, &idle_);
  uv_async_init(uv_, &async_, &EngineHandle::OnAsync);
  // The poll handle is what keeps the process alive (setRef); a pending
  // wake-up from a reader thread must not.
  uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  poll_.data = timer_.data = idle_.data = async_.data = this;
  open_handles_ = 4;
  uv_poll_start(&poll_, UV_READABLE, &EngineHandle::OnPoll);
  state_ = State::kRunning;
  // A running engine must outlive its JS wrapper's last user reference: libuv
  // points at it. Released in FinishClose().
  Ref();
  napi_add_async_cleanup_hook(env, &EngineHandle::OnEnvCleanup, this, &cleanup_hook_);
  return Napi::Number::New(env, 0);
}

void EngineHandle::OnPoll(uv_poll_t* handle, int /*status*/, int /*events*/) {
  auto* self = static_cast<EngineHandle*>(handle->data);
  if (self->state_ != State::kRunning) return;
  Napi::HandleScope scope(self->Env());
  // Records left over from an earlier round go first: Poll() reuses the slab.
  if (self->loop_.has_records()) self->Dispatch();
  if (!self->loop_.has_records()) {
    self->loop_.Poll();
    self->Dispatch();
  }
}

void EngineHandle::OnTimer(uv_timer_t* handle) {
  auto* self = static_cast<EngineHandle*>(handle->data);
  if (self->state_ != State::kRunning) return;
  Napi::HandleScope scope(self->Env());
  self->timer_armed_ms_ = -1;
  self->loop_.ExpireTimers();
  self->Dispatch();
}

void EngineHandle::WakeFromReader(void* arg) {
  // Thread-safe, and coalesced by libuv: many readers, one callback. The
  // handle is closed only after every reader has been joined (CloseHandles).
  uv_async_send(&static_cast<EngineHandle*>(arg)->async_);
}

void EngineHandle::OnAsync(uv_async_t* handle) {
  auto* self = static_cast<EngineHandle*>(handle->data);
  if (self->state_ != State::kRunning) return;
  Napi::HandleScope scope(self->Env());
  // Like OnPoll: the readers' bytes go into the slab, which must be free.
  if (self->loop_.has_records()) self->Dispatch();
  if (self->loop_.has_records()) {
    uv_async_send(&self->async_);  // the consumer is behind: collect later
    return;
  }
  bool more = self->loop_.CollectReaders();
  self->Dispatch();
  if (more) uv_async_send(&self->async_);
}

void EngineHandle::OnIdle(uv_idle_t* handle) {
  auto* self = static_cast<EngineHandle*>(handle->data);
  Napi::HandleScope scope(self->Env());
  self->Dispatch();
  if (self->state_ == State::kRunning && !self->loop_.has_records() && self->loop_.has_tls_backlog()) {
    // Decrypted input that did not fit in the last slab: no socket event
    // will announce it, so this turn runs an iteration itself.
    self->loop_.Poll();
    self->Dispatch();
  }
}

void EngineHandle::Dispatch() {
  if (dispatching_ || env_teardown_) return;
  dispatching_ = true;
  Napi::Env env = Env();
  for (int round = 0; round < kMaxDispatchRounds && loop_.has_records(); round++) {
    size_t n = loop_.records().size() / kRecordInts;
    if (n > records_cap_) n = records_cap_;
    std::memcpy(records_, loop_.records().data(), n * kRecordInts * sizeof(int32_t));
    loop_.ConsumeRecords(n);
    napi_value argv[1] = {Napi::Number::New(env, static_cast<double>(n))};
    napi_value result;
    napi_status s = napi_make_callback(env, async_context_, Value(), on_batch_.Value(), 1, argv, &result);
    if (s != napi_ok) {
      // An exception escaped the batch handler (lib/ catches user callbacks'
      // exceptions and rethrows the first after the batch): report it as
      // uncaught, the way an EventEmitter listener's would be.
      napi_value err;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }
  if (!loop_.has_records()) loop_.FreeClosedSlots();
  dispatching_ = false;
  AfterExternalChange();
}

// Called after anything that may have produced records or moved a deadline
// outside Dispatch(): a flush from a timer, a dial, the end of a batch.
void EngineHandle::AfterExternalChange() {
  if (state_ != State::kRunning) return;
  bool want_idle = (loop_.has_records() || loop_.has_tls_backlog()) && !dispatching_;
  if (want_idle && !idle_active_) {
    uv_idle_start(&idle_, &EngineHandle::OnIdle);
    idle_active_ = true;
  } else if (!want_idle && !dispatching_ && idle_active_) {
    uv_idle_stop(&idle_);
    idle_active_ = false;
  }
  RearmTimer();
}

void EngineHandle::RearmTimer() {
  int64_t ms = loop_.MsUntilNextDeadline();
  if (ms < 0) {
    if (timer_armed_ms_ != -1) uv_timer_stop(&timer_);
    timer_armed_ms_ = -1;
    return;
  }
  // Restarting a uv timer is cheap, but a read deadline pushed back after
  // every message would do it on every batch: skip it when the earliest
  // deadline did not move earlier than the armed one.
  uint64_t due = uv_now(uv_) + static_cast<uint64_t>(ms);
  uint64_t armed_due = timer_armed_ms_ >= 0 ? static_cast<uint64_t>(timer_armed_ms_) : UINT64_MAX;
  if (due >= armed_due && timer_armed_ms_ >= 0) return;
  uv_timer_start(&timer_, &EngineHandle::OnTimer, static_cast<uint64_t>(ms), 0);
  timer_armed_ms_ = static_cast<int64_t>(due);
}

// flush(count, refs?): executes `count` commands from the shared command
// array; refs is an array of Uint8Arrays that WRITE_REF commands index.
Napi::Value EngineHandle::Flush(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return ThrowType(env, "flush(count, refs)");
  double count = info[0].As<Napi::Number>().DoubleValue();
  if (!(count >= 0) || count > static_cast<double>(cmds_cap_)) return ThrowType(env, "flush: count out of range");
  if (state_ != State::kRunning) return env.Undefined();
  refs_.clear();
  if (info.Length() >= 2 && info[1].IsArray()) {
    Napi::Array refs = info[1].As<Napi::Array>();
    uint32_t n = refs.Length();
    refs_.reserve(n);
    for (uint32_t i = 0; i < n; i++) {
      uint8_t* data = nullptr;
      size_t len = 0;
      iovec v{nullptr, 0};
      if (GetTypedArray(refs.Get(i), napi_uint8_array, &data, &len)) {
        v.iov_base = data;
        v.iov_len = len;
      }
      refs_.push_back(v);
    }
  }
  loop_.Apply(cmds_, static_cast<size_t>(count), out_, out_len_, refs_.data(), refs_.size());
  refs_.clear();
  AfterExternalChange();
  return env.Undefined();
}

// ---------------------------------------------------------------------------
// Stopping

Napi::Value EngineHandle::Stop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (state_ != State::kRunning) return Napi::Boolean::New(env, false);
  if (info.Length() >= 1 && info[0].IsFunction()) on_closed_ = Napi::Persistent(info[0].As<Napi::Function>());
  loop_.Stop();
  // The final batch (a CLOSE record per connection) goes out now, while the
  // engine still counts as running; a stop() called from inside a batch
  // leaves it to the batch that is being delivered.
  Dispatch();
  state_ = State::kStopping;
  CloseHandles();
  return Napi::Boolean::New(env, true);
}

void EngineHandle::CloseHandles() {
  // Order matters: reader threads wake us through async_, so they are all
  // joined before it closes; and the poller fd is unwatched before it is
  // closed (FinishClose, once libuv has released all four handles).
  loop_.JoinReaders();
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), &EngineHandle::OnHandleClosed);
  uv_poll_stop(&poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), &EngineHandle::OnHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &EngineHandle::OnHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), &EngineHandle::OnHandleClosed);
}

void EngineHandle::OnHandleClosed(uv_handle_t* handle) {
  auto* self = static_cast<EngineHandle*>(handle->data);
  if (--self->open_handles_ == 0) self->FinishClose();
}

void EngineHandle::FinishClose() {
  loop_.Close();
  state_ = State::kClosed;
  if (env_teardown_) {
    // The environment is going away: no JS may run, but it is still alive
    // until the hook is removed, so release what it allocated for us now (the
    // wrapper is finalized by the environment itself, maybe without a GC).
    napi_async_destroy(Env(), async_context_);
    async_context_ = nullptr;
    napi_remove_async_cleanup_hook(cleanup_hook_);
    cleanup_hook_ = nullptr;
    return;
  }
  if (cleanup_hook_ != nullptr) {
    napi_remove_async_cleanup_hook(cleanup_hook_);
    cleanup_hook_ = nullptr;
  }
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  if (!on_closed_.IsEmpty()) {
    Napi::FunctionReference cb = std::move(on_closed_);
    napi_value result;
    if (napi_make_callback(env, async_context_, Value(), cb.Value(), 0, nullptr, &result) != napi_ok) {
      napi_value err;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }
  napi_async_destroy(env, async_context_);
  async_context_ = nullptr;
  Unref();  // may finalize this object: nothing after it
}

void EngineHandle::OnEnvCleanup(napi_async_cleanup_hook_handle /*hook*/, void* arg) {
  // The worker thread (or the process) is exiting with the engine running:
  // close everything without calling into JS.
  auto* self = static_cast<EngineHandle*>(arg);
  self->env_teardown_ = true;
  if (self->state_ == State::kRunning) {
    self->state_ = State::kStopping;
    self->CloseHandles();
  } else if (self->state_ == State::kClosed) {
    napi_remove_async_cleanup_hook(self->cleanup_hook_);
    self->cleanup_hook_ = nullptr;
  }
}

// ---------------------------------------------------------------------------
// Queries

Napi::Value EngineHandle::Queued(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) return ThrowType(env, "queued(slot, gen)");
  int64_t q = loop_.Queued(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value());
  return Napi::Number::New(env, static_cast<double>(q));
}

Napi::Value EngineHandle::Address(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber()) {
    return ThrowType(env, "address(slot, gen, peer)");
  }
  AddressInfo a;
  int r = loop_.Address(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value(),
                        info[2].ToBoolean().Value(), &a);
  return AddressArray(env, r, a);
}

// stats(out: Float64Array(15)): online, accepted, dialed, closed, rejected,
// bytesIn, bytesOut, queued, blockingOnline (reader threads alive),
// readersStarted, readerBytes (stack plus buffer reserved per reader),
// readPaused (connections not read because of backpressure), tlsHandshakes,
// tlsFailed (TLS connections dropped before their handshake completed),
// writesSkipped (published frames dropped by a skip mark).
Napi::Value EngineHandle::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double* out = nullptr;
  size_t len = 0;
  if (info.Length() < 1 || !GetTypedArray(info[0], napi_float64_array, &out, &len) || len < 15) {
    return ThrowType(env, "stats(Float64Array(15))");
  }
  const LoopStats& s = loop_.stats();
  out[0] = static_cast<double>(s.online);
  out[1] = static_cast<double>(s.accepted);
  out[2] = static_cast<double>(s.dialed);
  out[3] = static_cast<double>(s.closed);
  out[4] = static_cast<double>(s.rejected);
  out[5] = static_cast<double>(s.bytes_in);
  out[6] = static_cast<double>(s.bytes_out);
  out[7] = static_cast<double>(s.queued);
  out[8] = static_cast<double>(s.blocking_online);
  out[9] = static_cast<double>(s.readers_started);
  out[10] = static_cast<double>(loop_.reader_bytes());
  out[11] = static_cast<double>(s.read_paused);
  out[12] = static_cast<double>(s.tls_handshakes);
  out[13] = static_cast<double>(s.tls_failed);
  out[14] = static_cast<double>(s.writes_skipped);
  return env.Undefined();
}

// destroy(): releases a handle that was never started (start() failed
// half-way, e.g. one of several listeners hit EADDRINUSE) at once instead of
// leaving its descriptors to the garbage collector.
Napi::Value EngineHandle::Destroy(const Napi::CallbackInfo& info) {
  if (state_ == State::kCreated) {
    loop_.Close();
    state_ = State::kClosed;
  }
  return info.Env().Undefined();
}

// closeListeners(): stop accepting, while the connections go on (a
// WebSocket server saying goodbye before it stops).
Napi::Value EngineHandle::CloseListeners(const Napi::CallbackInfo& info) {
  if (state_ == State::kRunning) loop_.CloseListeners();
  return info.Env().Undefined();
}

// setListenerTls(id, tlsContext | null) -> 0 | -errno: the certificate (and
// everything else) new connections on that listener get; live ones keep
// theirs (Engine.setSecureContext).
Napi::Value EngineHandle::SetListenerTls(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber()) return ThrowType(env, "setListenerTls(id, tlsContext)");
  SSL_CTX* ctx = nullptr;
  if (!info[1].IsNull()) {
    ctx = TlsContextArg(info[1]);
    if (ctx == nullptr) return ThrowType(env, "setListenerTls: tlsContext must come from createTlsContext()");
  }
  return Napi::Number::New(env, loop_.SetListenerTls(info[0].As<Napi::Number>().Int32Value(), ctx));
}

// tlsInfo(slot, gen) -> { protocol, cipher, alpn, servername, resumed,
// error, errorText } | undefined: a TLS connection's negotiated facts, or why
// it failed (readable until the slot is reused, i.e. inside its CLOSE or
// TLS_FAIL record's batch).
Napi::Value EngineHandle::TlsInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) return ThrowType(env, "tlsInfo(slot, gen)");
  const TlsConn* t = loop_.TlsOf(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value());
  if (t == nullptr) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("protocol", t->Protocol());
  o.Set("cipher", t->Cipher());
  o.Set("alpn", t->Alpn());
  o.Set("servername", t->ServerName());
  o.Set("resumed", t->Resumed());
  o.Set("error", t->error());
  o.Set("errorText", t->error_text());
  return o;
}

// setRef(bool): whether a running engine keeps the process alive.
Napi::Value EngineHandle::SetRef(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (state_ != State::kRunning) return env.Undefined();
  bool on = info.Length() >= 1 && info[0].ToBoolean().Value();
  uv_handle_t* handles[] = {reinterpret_cast<uv_handle_t*>(&poll_), reinterpret_cast<uv_handle_t*>(&timer_)};
  for (uv_handle_t* h : handles) {
    if (on) {
      uv_ref(h);
    } else {
      uv_unref(h);
    }
  }
  return env.Undefined();
}

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("RECORD_INTS", Napi::Number::New(env, kRecordInts));
  c.Set("REC_OPEN", Napi::Number::New(env, kRecOpen));
  c.Set("REC_DATA", Napi::Number::New(env, kRecData));
  c.Set("REC_CLOSE", Napi::Number::New(env, kRecClose));
  c.Set("REC_DRAIN", Napi::Number::New(env, kRecDrain));
  c.Set("REC_DIAL_FAIL", Napi::Number::New(env, kRecDialFail));
  c.Set("REC_TLS_FAIL", Napi::Number::New(env, kRecTlsFail));
  c.Set("REASON_TLS_TRUNCATED", Napi::Number::New(env, kReasonTlsTruncated));
  c.Set("REASON_TLS", Napi::Number::New(env, kReasonTls));
  c.Set("TLS_ERR_HANDSHAKE", Napi::Number::New(env, kTlsErrHandshake));
  c.Set("TLS_ERR_TIMEOUT", Napi::Number::New(env, kTlsErrTimeout));
  c.Set("TLS_ERR_TOO_LARGE", Napi::Number::New(env, kTlsErrTooLarge));
  c.Set("TLS_ERR_EOF", Napi::Number::New(env, kTlsErrEof));
  c.Set("TLS_ERR_PROTOCOL", Napi::Number::New(env, kTlsErrProtocol));
  c.Set("TLS_ERR_VERIFY", Napi::Number::New(env, kTlsErrVerify));
  c.Set("REASON_EOF", Napi::Number::New(env, kReasonEof));
  c.Set("REASON_ERRNO", Napi::Number::New(env, kReasonErrno));
  c.Set("REASON_READ_TIMEOUT", Napi::Number::New(env, kReasonReadTimeout));
  c.Set("REASON_WRITE_TIMEOUT", Napi::Number::New(env, kReasonWriteTimeout));
  c.Set("REASON_OVERFLOW", Napi::Number::New(env, kReasonOverflow));
  c.Set("REASON_LOCAL", Napi::Number::New(env, kReasonLocal));
  c.Set("REASON_STOP", Napi::Number::New(env, kReasonStop));
  c.Set("REASON_BUDGET", Napi::Number::New(env, kReasonBudget));
  c.Set("ADOPTED_LISTENER", Napi::Number::New(env, kAdoptedListener));
  c.Set("CMD_WRITE", Napi::Number::New(env, kCmdWrite));
  c.Set("CMD_WRITE_REF", Napi::Number::New(env, kCmdWriteRef));
  c.Set("CMD_CLOSE", Napi::Number::New(env, kCmdClose));
  c.Set("CMD_DEADLINE", Napi::Number::New(env, kCmdDeadline));
  c.Set("MAX_EVENTS", Napi::Number::New(env, Poller::kMaxEvents));
  c.Set("IO_NONBLOCKING", Napi::Number::New(env, kIoNonBlocking));
  c.Set("IO_BLOCKING", Napi::Number::New(env, kIoBlocking));
  c.Set("IO_MIXED", Napi::Number::New(env, kIoMixed));
  return c;
}

}  // namespace

// The unmasking functions below are called per received message: plain
// N-API callbacks, without node-addon-api's CallbackInfo (which allocates
// an argument array past six arguments) and its per-accessor calls.
bool NumberArg(napi_env env, napi_value v, double* out) { return napi_get_value_double(env, v, out) == napi_ok; }

// A key index argument: its low two bits, as the JavaScript callers keep it.
unsigned KeyIndexArg(double d) {
  // Range-checked before the conversion: a NaN or huge double cast to an integer is undefined.
  return d >= 0 && d < 4294967296.0 ? static_cast<uint32_t>(d) & 3u : 0u;
}

napi_value RawNumber(napi_env env, unsigned v) {
  napi_value out = nullptr;
  napi_create_uint32(env, v, &out);
  return out;
}

napi_value RawThrowType(napi_env env, const char* message) {
  napi_throw_type_error(env, nullptr, message);
  return nullptr;
}

// mask(buf, start, end, key, keyIndex) -> keyIndex: XORs buf[start, end)
// with the 4-byte WebSocket masking key in place (RFC 6455 §5.3), key byte
// keyIndex first; returns the key index of the byte at end. For large
// payloads: the vector loop of mask.h is several times faster than
// JavaScript's 32-bit typed-array loop (lib/websocket/mask.ts uses this above
// a threshold).
napi_value Mask(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 5;
  napi_value argv[5];
  uint8_t* buf = nullptr;
  uint8_t* key = nullptr;
  size_t len = 0, key_len = 0;
  double start_d = 0, end_d = 0, k_d = 0;
  if (napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) != napi_ok || argc < 5 ||
      !GetTypedArray(env, argv[0], napi_uint8_array, &buf, &len) || !NumberArg(env, argv[1], &start_d) ||
      !NumberArg(env, argv[2], &end_d) || !GetTypedArray(env, argv[3], napi_uint8_array, &key, &key_len) ||
      key_len < 4 || !NumberArg(env, argv[4], &k_d)) {
    return RawThrowType(env, "mask(buf, start, end, key, keyIndex)");
  }
  if (!(start_d >= 0 && start_d <= end_d && end_d <= static_cast<double>(len))) {
    return RawThrowType(env, "mask: start and end must satisfy 0 <= start <= end <= buf.length");
  }
  size_t start = static_cast<size_t>(start_d);
  size_t end = static_cast<size_t>(end_d);
  uint8_t* p = buf + start;
  return RawNumber(env, MaskCopy(p, p, end - start, key, KeyIndexArg(k_d)));
}

// maskCopy(src, srcStart, dst, dstStart, n, key, keyIndex) -> keyIndex:
// dst[dstStart + i] = src[srcStart + i] ^ key[(keyIndex + i) % 4] for i < n,
// in one pass: the receiver's copy of a payload out of the receive slab and
// its unmasking together, as the C echo server does them. src and dst must
// not overlap (they are different buffers in every caller; checked).
napi_value MaskCopyFn(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 7;
  napi_value argv[7];
  uint8_t* src = nullptr;
  uint8_t* dst = nullptr;
  uint8_t* key = nullptr;
  size_t src_len = 0, dst_len = 0, key_len = 0;
  double src_start = 0, dst_start = 0, n_d = 0, k_d = 0;
  if (napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) != napi_ok || argc < 7 ||
      !GetTypedArray(env, argv[0], napi_uint8_array, &src, &src_len) || !NumberArg(env, argv[1], &src_start) ||
      !GetTypedArray(env, argv[2], napi_uint8_array, &dst, &dst_len) || !NumberArg(env, argv[3], &dst_start) ||
      !NumberArg(env, argv[4], &n_d) || !GetTypedArray(env, argv[5], napi_uint8_array, &key, &key_len) ||
      key_len < 4 || !NumberArg(env, argv[6], &k_d)) {
    return RawThrowType(env, "maskCopy(src, srcStart, dst, dstStart, n, key, keyIndex)");
  }
  if (!(src_start >= 0 && dst_start >= 0 && n_d >= 0 && src_start + n_d <= static_cast<double>(src_len) &&
        dst_start + n_d <= static_cast<double>(dst_len))) {
    return RawThrowType(env, "maskCopy: the ranges must lie within src and dst");
  }
  size_t n = static_cast<size_t>(n_d);
  const uint8_t* from = src + static_cast<size_t>(src_start);
  uint8_t* to = dst + static_cast<size_t>(dst_start);
  if (n > 0 && from < to + n && to < from + n) return RawThrowType(env, "maskCopy: src and dst ranges overlap");
  return RawNumber(env, MaskCopy(to, from, n, key, KeyIndexArg(k_d)));
}

// releaseMemory(critical): tells V8 the process is under memory pressure.
Napi::Value ReleaseMemory(const Napi::CallbackInfo& info) {
  bool critical = info.Length() >= 1 && info[0].ToBoolean().Value();
  v8::Isolate::GetCurrent()->MemoryPressureNotification(critical ? v8::MemoryPressureLevel::kCritical
                                                                   : v8::MemoryPressureLevel::kModerate);
  return info.Env().Undefined();
}

// trimMemory() -> bool: hands the C allocator's free memory back to the
// system. glibc keeps freed blocks in its arenas, and after a burst of large
// buffers (write queues, messages) its dynamic mmap threshold has risen, so
// they were carved from the heap and stay resident: malloc_trim releases the
// free pages inside every arena. Other C libraries return memory on their
// own: false there.
Napi::Value TrimMemory(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), TrimAllocator());
}

std::string StringField(Napi::Object o, const char* name) {
  Napi::Value v = o.Get(name);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

// createTlsContext(options) -> tlsContext: options as lib/tls.ts built them
// (PEM strings, versions as OpenSSL numbers, ALPN in wire format, sni as
// [[name, tlsContext], ...]). Throws an Error that says what is wrong with
// them (bad PEM, wrong passphrase, key/cert mismatch, unknown ciphers).
Napi::Value CreateTlsContext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) return ThrowType(env, "createTlsContext(options)");
  Napi::Object o = info[0].As<Napi::Object>();
  TlsContextConfig c;
  c.server = o.Get("server").ToBoolean().Value();
  c.cert = StringField(o, "cert");
  c.key = StringField(o, "key");
  c.passphrase = StringField(o, "passphrase");
  c.ca = StringField(o, "ca");
  c.ciphers = StringField(o, "ciphers");
  c.ciphersuites = StringField(o, "ciphersuites");
  c.min_version = static_cast<int>(NumberField(o, "minVersion", 0));
  c.max_version = static_cast<int>(NumberField(o, "maxVersion", 0));
  Napi::Value alpn = o.Get("alpn");
  if (alpn.IsBuffer()) {
    Napi::Buffer<char> b = alpn.As<Napi::Buffer<char>>();
    c.alpn.assign(b.Data(), b.Length());
  }
  c.request_cert = o.Get("requestCert").ToBoolean().Value();
  c.reject_unauthorized = o.Get("rejectUnauthorized").ToBoolean().Value();
  c.session_timeout = static_cast<long>(NumberField(o, "sessionTimeout", 300));
  Napi::Value sni = o.Get("sni");
  if (sni.IsArray()) {
    Napi::Array a = sni.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value e = a.Get(i);
      if (!e.IsArray()) return ThrowType(env, "createTlsContext: sni entries must be [name, tlsContext]");
      Napi::Array pair = e.As<Napi::Array>();
      SSL_CTX* child = TlsContextArg(pair.Get(1u));
      if (!pair.Get(0u).IsString() || child == nullptr) {
        return ThrowType(env, "createTlsContext: sni entries must be [name, tlsContext]");
      }
      c.sni.emplace_back(pair.Get(0u).As<Napi::String>().Utf8Value(), child);  // NewTlsContext takes its own reference
    }
  }
  std::string error;
  SSL_CTX* ctx = NewTlsContext(c, &error);
  if (ctx == nullptr) {
    Napi::Error e = Napi::Error::New(env, error);
    e.Set("code", Napi::String::New(env, "NETLOOP_TLS_CONFIG"));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // An empty object wrapping the context: Node finalizes wrapped objects
  // still alive when the environment goes away, so no context outlives it.
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok ||
      napi_wrap(env, obj, ctx, [](napi_env, void* p, void*) { FreeTlsContext(static_cast<SSL_CTX*>(p)); }, nullptr,
                nullptr) != napi_ok) {
    FreeTlsContext(ctx);
    Napi::Error::New(env, "createTlsContext: out of memory").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  napi_type_tag_object(env, obj, &kTlsContextTag);
  return Napi::Value(env, obj);
}

Napi::Value RawFunction(Napi::Env env, const char* name, napi_callback cb) {
  napi_value fn = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, nullptr, &fn), Napi::Value());
  return Napi::Value(env, fn);
}

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("releaseMemory", Napi::Function::New(env, ReleaseMemory));
  exports.Set("trimMemory", Napi::Function::New(env, TrimMemory));
  exports.Set("mask", RawFunction(env, "mask", Mask));
  exports.Set("createTlsContext", Napi::Function::New(env, CreateTlsContext));
  exports.Set("maskCopy", RawFunction(env, "maskCopy", MaskCopyFn));
  exports.Set("EngineHandle", EngineHandle::Define(env));
  exports.Set("constants", Constants(env));
#if defined(__linux__)
  exports.Set("backend", "epoll");
#else
  exports.Set("backend", "kqueue");
#endif
  return exports;
}

}  // namespace netloop

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return netloop::InitAddon(env, exports); }

NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitModule)
