// The C++ reference library (Debian's libopenigtlink-dev) watching `stylet igtl serve` beside the
// scripted Slicer session: receives every message until the server closes, unpacks each IMAGE,
// POLYDATA and TRANSFORM with the library (CRC checked), prints one line for the first of each
// device and, at the end, how many of each type it unpacked and how many failed their CRC.
// Meanwhile, every 500 ms, it sends a command the convention does not know (STRING CMD_9nnn
// "PING": acknowledged, then refused with STATUS 12 to this client alone; nothing reaches the
// procedure) and times its ACK from the send to the ACK's arrival, whatever else is streaming
// (the CTs included): the last line says how many ACKs came back and the slowest. A second
// connection asks not to be sent images (STP_IMAGE, answered RTS_IMAGE) and pings the same way:
// a command connection with no CT in front of its ACKs.
// Built and run by tests/igtl_session.rs:
//   g++ igtl_cpp_watch.cxx -I/usr/include/openigtlink -lOpenIGTLink -pthread
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unistd.h>

#include "igtlClientSocket.h"
#include "igtlImageMessage.h"
#include "igtlMessageHeader.h"
#include "igtlPolyDataMessage.h"
#include "igtlStringMessage.h"
#include "igtlTransformMessage.h"

using Clock = std::chrono::steady_clock;

namespace igtl {
igtlCreateDefaultQueryMessageClass(StopImageMessage, "STP_IMAGE")
}

// STRING CMD_<id> "PING", packed: a command the convention does not know (acknowledged, then
// refused with STATUS 12 to the sender alone; nothing reaches the procedure).
static igtl::StringMessage::Pointer ping(int id) {
  igtl::StringMessage::Pointer m = igtl::StringMessage::New();
  m->SetDeviceName(("CMD_" + std::to_string(id)).c_str());
  m->SetString("PING");
  m->Pack();
  return m;
}

// The command connection: STP_IMAGE, then a PING every 500 ms, each ACK read and timed (the
// other messages read past) until the server closes; "ACKS_NO_IMAGES n images i slowest x ms".
static void command_connection(int port, std::atomic<bool>& done, std::string& result) {
  igtl::ClientSocket::Pointer s = igtl::ClientSocket::New();
  if (s->ConnectToServer("127.0.0.1", port) != 0) { result = "ACKS_NO_IMAGES cannot connect"; return; }
  igtl::StopImageMessage::Pointer stop = igtl::StopImageMessage::New();
  stop->SetDeviceName("");
  stop->Pack();
  s->Send(stop->GetPackPointer(), stop->GetPackSize());
  int acks = 0, images = 0, rts = 0;
  double slowest = 0.0;
  for (int n = 1; !done; n++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    igtl::StringMessage::Pointer m = ping(8000 + n);
    Clock::time_point t0 = Clock::now();
    if (s->Send(m->GetPackPointer(), m->GetPackSize()) == 0) break;
    std::string want = "ACK_" + std::to_string(8000 + n);
    for (;;) {
      igtl::MessageHeader::Pointer h = igtl::MessageHeader::New();
      h->InitPack();
      if (s->Receive(h->GetPackPointer(), h->GetPackSize()) != h->GetPackSize()) { done = true; break; }
      h->Unpack();
      std::string type = h->GetDeviceType(), name = h->GetDeviceName();
      s->Skip(h->GetBodySizeToRead(), 0);
      images += type == "IMAGE";
      rts += type == "RTS_IMAGE";
      if (type == "STRING" && name == want) {
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        acks++;
        if (ms > slowest) slowest = ms;
        break;
      }
    }
  }
  s->CloseSocket();
  char line[160];
  snprintf(line, sizeof line, "ACKS_NO_IMAGES %d images %d rts %d slowest %.1f ms", acks, images, rts, slowest);
  result = line;
}

template <class M> static bool unpack(igtl::ClientSocket::Pointer& s, igtl::MessageHeader::Pointer& h, M& m) {
  m->SetMessageHeader(h);
  m->AllocatePack();
  s->Receive(m->GetPackBodyPointer(), m->GetPackBodySize());
  return (m->Unpack(1) & igtl::MessageHeader::UNPACK_BODY) != 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  alarm(600);
  igtl::ClientSocket::Pointer socket = igtl::ClientSocket::New();
  if (socket->ConnectToServer("127.0.0.1", atoi(argv[1])) != 0) {
    fprintf(stderr, "cannot connect\n");
    return 2;
  }
  printf("CONNECTED\n");
  fflush(stdout);
  std::map<std::string, int> unpacked;
  std::set<std::string> seen;
  int bad = 0;
  // The pings: when each was sent, by its ACK's device name.
  std::mutex mu;
  std::map<std::string, Clock::time_point> sent;
  std::atomic<bool> done{false};
  int acks = 0;
  double ack_max_ms = 0.0;
  std::string command_result;
  std::thread commander(command_connection, atoi(argv[1]), std::ref(done), std::ref(command_result));
  std::thread pinger([&] {
    for (int n = 1; !done; n++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      if (done) break;
      igtl::StringMessage::Pointer m = ping(9000 + n);
      {
        std::lock_guard<std::mutex> g(mu);
        sent["ACK_" + std::to_string(9000 + n)] = Clock::now();
      }
      if (socket->Send(m->GetPackPointer(), m->GetPackSize()) == 0) break;
    }
  });
  for (;;) {
    igtl::MessageHeader::Pointer h = igtl::MessageHeader::New();
    h->InitPack();
    int r = socket->Receive(h->GetPackPointer(), h->GetPackSize());
    if (r != h->GetPackSize()) break;
    h->Unpack();
    std::string type = h->GetDeviceType(), dev = h->GetDeviceName();
    bool first = seen.insert(type + " " + dev).second;
    if (type == "IMAGE") {
      igtl::ImageMessage::Pointer m = igtl::ImageMessage::New();
      if (!unpack(socket, h, m)) { printf("BADCRC %s %s\n", type.c_str(), dev.c_str()); bad++; continue; }
      int d[3];
      m->GetDimensions(d);
      float sp[3];
      m->GetSpacing(sp);
      if (first) printf("IMAGE %s %dx%dx%d spacing %g,%g,%g type %d\n", dev.c_str(), d[0], d[1], d[2], sp[0], sp[1], sp[2],
                        m->GetScalarType());
    } else if (type == "POLYDATA") {
      igtl::PolyDataMessage::Pointer m = igtl::PolyDataMessage::New();
      if (!unpack(socket, h, m)) { printf("BADCRC %s %s\n", type.c_str(), dev.c_str()); bad++; continue; }
      int n = m->GetPoints() ? m->GetPoints()->GetNumberOfPoints() : 0;
      int polys = m->GetPolygons() ? m->GetPolygons()->GetNumberOfCells() : 0;
      int lines = m->GetLines() ? m->GetLines()->GetNumberOfCells() : 0;
      if (first) printf("POLYDATA %s points %d polygons %d lines %d\n", dev.c_str(), n, polys, lines);
    } else if (type == "TRANSFORM") {
      igtl::TransformMessage::Pointer m = igtl::TransformMessage::New();
      if (!unpack(socket, h, m)) { printf("BADCRC %s %s\n", type.c_str(), dev.c_str()); bad++; continue; }
      igtl::Matrix4x4 mm;
      m->GetMatrix(mm);
      if (first) printf("TRANSFORM %s %g %g %g\n", dev.c_str(), mm[0][3], mm[1][3], mm[2][3]);
    } else {
      socket->Skip(h->GetBodySizeToRead(), 0);
      if (type == "STRING" && dev.rfind("ACK_9", 0) == 0) {
        std::lock_guard<std::mutex> g(mu);
        auto it = sent.find(dev);
        if (it != sent.end()) {
          double ms = std::chrono::duration<double, std::milli>(Clock::now() - it->second).count();
          acks++;
          if (ms > ack_max_ms) ack_max_ms = ms;
          sent.erase(it);
        }
      }
      continue;
    }
    unpacked[type]++;
    fflush(stdout);
  }
  done = true;
  socket->CloseSocket();
  pinger.join();
  commander.join();
  printf("ACKS %d unanswered %zu slowest %.1f ms\n", acks, sent.size(), ack_max_ms);
  printf("%s\n", command_result.c_str());
  printf("END");
  for (auto& kv : unpacked) printf(" %s=%d", kv.first.c_str(), kv.second);
  printf(" BADCRC=%d\n", bad);
  return 0;
}
