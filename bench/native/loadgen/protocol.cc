// Picking a connection's protocol from --proto.
#include "protocol.h"

#include "pattern.h"
#include "plan.h"
#include "ws_protocol.h"

namespace loadgen {

std::unique_ptr<Protocol> make_protocol(const Plan& plan, uint32_t conn_id) {
  if (plan.opt.proto == "tcp") return std::unique_ptr<Protocol>(new TcpProtocol());
  if (plan.opt.proto == "ws") {
    return std::unique_ptr<Protocol>(new WsProtocol(plan.ws, mix64(plan.seed ^ (static_cast<uint64_t>(conn_id) * kGolden))));
  }
  return nullptr;
}

bool protocol_known(const std::string& name) { return name == "tcp" || name == "ws"; }

}  // namespace loadgen
