// The C++ reference library (Debian's libopenigtlink-dev) watching `stylet igtl serve` beside the
// scripted Slicer session: receives every message until the server closes, unpacks each IMAGE,
// POLYDATA and TRANSFORM with the library (CRC checked), prints one line for the first of each
// device and, at the end, how many of each type it unpacked and how many failed their CRC.
// Built and run by tests/igtl_session.rs:
//   g++ igtl_cpp_watch.cxx -I/usr/include/openigtlink -lOpenIGTLink
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <unistd.h>

#include "igtlClientSocket.h"
#include "igtlImageMessage.h"
#include "igtlMessageHeader.h"
#include "igtlPolyDataMessage.h"
#include "igtlTransformMessage.h"

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
      continue;
    }
    unpacked[type]++;
    fflush(stdout);
  }
  printf("END");
  for (auto& kv : unpacked) printf(" %s=%d", kv.first.c_str(), kv.second);
  printf(" BADCRC=%d\n", bad);
  socket->CloseSocket();
  return 0;
}
