#include "vpn/policy/sock_diag.h"

#include "vpn/policy/netlink_message.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace steward::vpn::diag {
namespace {

namespace ip = boost::asio::ip;

struct Request {
  nlmsghdr header;
  inet_diag_req_v2 body;
};

class NetlinkSocket {
 public:
  NetlinkSocket() : fd_(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)) {}
  ~NetlinkSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

ip::address address_of(int family, const __be32 words[4]) {
  if (family == AF_INET) {
    ip::address_v4::bytes_type bytes;
    std::memcpy(bytes.data(), words, 4);
    return ip::address_v4(bytes);
  }
  ip::address_v6::bytes_type bytes;
  std::memcpy(bytes.data(), words, 16);
  return ip::address_v6(bytes);
}

void put_address(const ip::address& address, __be32 words[4]) {
  if (address.is_v4()) {
    auto bytes = address.to_v4().to_bytes();
    std::memcpy(words, bytes.data(), 4);
  } else {
    auto bytes = address.to_v6().to_bytes();
    std::memcpy(words, bytes.data(), 16);
  }
}

Socket parse(const nlmsghdr* header, int protocol) {
  const auto* message = static_cast<const inet_diag_msg*>(NLMSG_DATA(header));
  Socket socket;
  socket.family = message->idiag_family;
  socket.protocol = protocol;
  socket.state = message->idiag_state;
  socket.local = address_of(message->idiag_family, message->id.idiag_src);
  socket.local_port = ntohs(message->id.idiag_sport);
  socket.remote = address_of(message->idiag_family, message->id.idiag_dst);
  socket.remote_port = ntohs(message->id.idiag_dport);
  socket.interface = message->id.idiag_if;
  socket.cookie = {message->id.idiag_cookie[0], message->id.idiag_cookie[1]};
  socket.inode = message->idiag_inode;
  socket.uid = message->idiag_uid;
  int length = static_cast<int>(header->nlmsg_len - NLMSG_LENGTH(sizeof(*message)));
  for (auto* attribute = reinterpret_cast<const rtattr*>(message + 1); RTA_OK(attribute, length);
       attribute = RTA_NEXT(attribute, length)) {
    if (attribute->rta_type == INET_DIAG_CGROUP_ID && RTA_PAYLOAD(attribute) >= 8) {
      std::memcpy(&socket.cgroup_id, RTA_DATA(attribute), 8);
    }
  }
  return socket;
}

Status send_request(int fd, const Request& request) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, &request, sizeof(request), 0, reinterpret_cast<const sockaddr*>(&kernel),
               sizeof(kernel)) < 0) {
    return Error::make(ErrorCode::kIo, "sock_diag: send: {}", std::strerror(errno));
  }
  return ok();
}

}  // namespace

Result<std::vector<Socket>> dump(int family, int protocol) {
  NetlinkSocket netlink;
  if (netlink.fd() < 0) {
    return Error::make(ErrorCode::kIo, "sock_diag: socket: {}", std::strerror(errno));
  }
  Request request{};
  request.header.nlmsg_len = sizeof(request);
  request.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.body.sdiag_family = static_cast<uint8_t>(family);
  request.body.sdiag_protocol = static_cast<uint8_t>(protocol);
  request.body.idiag_states = ~0u;
  if (auto status = send_request(netlink.fd(), request); !status) return status.error();

  std::vector<Socket> sockets;
  alignas(nlmsghdr) char buffer[32768];
  for (;;) {
    ssize_t received = ::recv(netlink.fd(), buffer, sizeof(buffer), 0);
    if (received < 0) {
      if (errno == EINTR) continue;
      return Error::make(ErrorCode::kIo, "sock_diag: receive: {}", std::strerror(errno));
    }
    int length = static_cast<int>(received);
    for (auto* header = reinterpret_cast<nlmsghdr*>(buffer); netlink_message_ok(header, length);
         header = NLMSG_NEXT(header, length)) {
      if (header->nlmsg_type == NLMSG_DONE) return sockets;
      if (header->nlmsg_type == NLMSG_ERROR) {
        auto* error = static_cast<nlmsgerr*>(NLMSG_DATA(header));
        return Error::make(ErrorCode::kIo, "sock_diag: dump: {}", std::strerror(-error->error));
      }
      sockets.push_back(parse(header, protocol));
    }
  }
}

Status destroy(const Socket& socket) {
  NetlinkSocket netlink;
  if (netlink.fd() < 0) {
    return Error::make(ErrorCode::kIo, "sock_diag: socket: {}", std::strerror(errno));
  }
  Request request{};
  request.header.nlmsg_len = sizeof(request);
  request.header.nlmsg_type = SOCK_DESTROY;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  request.body.sdiag_family = static_cast<uint8_t>(socket.family);
  request.body.sdiag_protocol = static_cast<uint8_t>(socket.protocol);
  request.body.idiag_states = ~0u;
  request.body.id.idiag_sport = htons(socket.local_port);
  request.body.id.idiag_dport = htons(socket.remote_port);
  put_address(socket.local, request.body.id.idiag_src);
  put_address(socket.remote, request.body.id.idiag_dst);
  request.body.id.idiag_if = socket.interface;
  request.body.id.idiag_cookie[0] = socket.cookie[0];
  request.body.id.idiag_cookie[1] = socket.cookie[1];
  if (auto status = send_request(netlink.fd(), request); !status) return status;

  alignas(nlmsghdr) char buffer[4096];
  ssize_t received = ::recv(netlink.fd(), buffer, sizeof(buffer), 0);
  if (received < 0) {
    return Error::make(ErrorCode::kIo, "sock_diag: destroy: {}", std::strerror(errno));
  }
  auto* header = reinterpret_cast<nlmsghdr*>(buffer);
  if (header->nlmsg_type == NLMSG_ERROR) {
    auto* error = static_cast<nlmsgerr*>(NLMSG_DATA(header));
    if (error->error != 0) {
      return Error::make(ErrorCode::kIo, "sock_diag: destroy inode {}: {}", socket.inode,
                         std::strerror(-error->error));
    }
  }
  return ok();
}

}  // namespace steward::vpn::diag
