// The C++ reference library (Debian's libopenigtlink-dev) querying stylet_igtl::server: sends
// GET_CAPABIL, GET_STATUS, GET_IMGMETA, GET_IMAGE(CT_PLANNING), GET_TRANSFORM(NEEDLE),
// GET_POLYDATA(ZONE) and GET_TRANSFORM(NOWHERE), unpacks each answer with the library (CRC checked) and prints one line
// per answer, with its header's timestamp in seconds since 1970. Built and run by
// crates/stylet-igtl/tests/server.rs:  g++ igtl_cpp_queries.cxx -I/usr/include/openigtlink -lOpenIGTLink
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

#include "igtlCapabilityMessage.h"
#include "igtlClientSocket.h"
#include "igtlImageMessage.h"
#include "igtlImageMetaMessage.h"
#include "igtlMessageHeader.h"
#include "igtlPolyDataMessage.h"
#include "igtlStatusMessage.h"
#include "igtlTransformMessage.h"

template <class M> static void send(igtl::ClientSocket::Pointer& s, M& m, const char* device) {
  m->SetDeviceName(device);
  m->Pack();
  s->Send(m->GetPackPointer(), m->GetPackSize());
}

template <class M> static bool unpack(igtl::ClientSocket::Pointer& s, igtl::MessageHeader::Pointer& h, M& m) {
  m->SetMessageHeader(h);
  m->AllocatePack();
  s->Receive(m->GetPackBodyPointer(), m->GetPackBodySize());
  return (m->Unpack(1) & igtl::MessageHeader::UNPACK_BODY) != 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  alarm(30);
  igtl::ClientSocket::Pointer socket = igtl::ClientSocket::New();
  if (socket->ConnectToServer("127.0.0.1", atoi(argv[1])) != 0) {
    fprintf(stderr, "cannot connect\n");
    return 2;
  }
  igtl::GetCapabilityMessage::Pointer cap = igtl::GetCapabilityMessage::New();
  send(socket, cap, "STYLET");
  igtl::GetStatusMessage::Pointer st = igtl::GetStatusMessage::New();
  send(socket, st, "STYLET");
  igtl::GetImageMetaMessage::Pointer meta = igtl::GetImageMetaMessage::New();
  send(socket, meta, "");
  igtl::GetImageMessage::Pointer img = igtl::GetImageMessage::New();
  send(socket, img, "CT_PLANNING");
  igtl::GetTransformMessage::Pointer tf = igtl::GetTransformMessage::New();
  send(socket, tf, "NEEDLE");
  igtl::GetPolyDataMessage::Pointer zone = igtl::GetPolyDataMessage::New();
  send(socket, zone, "ZONE");
  igtl::GetTransformMessage::Pointer none = igtl::GetTransformMessage::New();
  send(socket, none, "NOWHERE");

  for (int answers = 0; answers < 7; answers++) {
    igtl::MessageHeader::Pointer h = igtl::MessageHeader::New();
    h->InitPack();
    int r = socket->Receive(h->GetPackPointer(), h->GetPackSize());
    if (r != h->GetPackSize()) { fprintf(stderr, "connection closed\n"); return 1; }
    h->Unpack();
    igtl::TimeStamp::Pointer ts = igtl::TimeStamp::New();
    h->GetTimeStamp(ts);
    std::string type = h->GetDeviceType(), dev = h->GetDeviceName();
    printf("TIME %s %s %.3f\n", type.c_str(), dev.c_str(), ts->GetTimeStamp());
    if (type == "CAPABILITY") {
      igtl::CapabilityMessage::Pointer m = igtl::CapabilityMessage::New();
      if (!unpack(socket, h, m)) { printf("BADCRC %s\n", dev.c_str()); continue; }
      printf("CAPABILITY %s", dev.c_str());
      for (int i = 0; i < m->GetNumberOfTypes(); i++) printf(" %s", m->GetType(i));
      printf("\n");
    } else if (type == "STATUS") {
      igtl::StatusMessage::Pointer m = igtl::StatusMessage::New();
      if (!unpack(socket, h, m)) { printf("BADCRC %s\n", dev.c_str()); continue; }
      printf("STATUS %s %d %s\n", dev.c_str(), m->GetCode(), m->GetStatusString());
    } else if (type == "IMGMETA") {
      igtl::ImageMetaMessage::Pointer m = igtl::ImageMetaMessage::New();
      if (!unpack(socket, h, m)) { printf("BADCRC %s\n", dev.c_str()); continue; }
      printf("IMGMETA %s", dev.c_str());
      for (int i = 0; i < m->GetNumberOfImageMetaElement(); i++) {
        igtl::ImageMetaElement::Pointer e;
        m->GetImageMetaElement(i, e);
        igtlUint16 size[3];
        e->GetSize(size);
        printf(" %s/%s/%s/%dx%dx%d/type%d", e->GetName(), e->GetDeviceName(), e->GetModality(), size[0], size[1],
               size[2], e->GetScalarType());
      }
      printf("\n");
    } else if (type == "IMAGE") {
      igtl::ImageMessage::Pointer m = igtl::ImageMessage::New();
      if (!unpack(socket, h, m)) { printf("BADCRC %s\n", dev.c_str()); continue; }
      int d[3];
      m->GetDimensions(d);
      printf("IMAGE %s %dx%dx%d\n", dev.c_str(), d[0], d[1], d[2]);
    } else if (type == "POLYDATA") {
      igtl::PolyDataMessage::Pointer m = igtl::PolyDataMessage::New();
      if (!unpack(socket, h, m)) { printf("BADCRC %s\n", dev.c_str()); continue; }
      igtlFloat32 last[3] = {0, 0, 0};
      int n = m->GetPoints()->GetNumberOfPoints();
      if (n > 0) m->GetPoints()->GetPoint(n - 1, last);
      igtl::PolyDataAttribute* a = m->GetNumberOfAttributes() > 0 ? m->GetAttribute(0) : 0;
      printf("POLYDATA %s points %d polygons %d last %g,%g,%g attribute %s\n", dev.c_str(), n,
             m->GetPolygons()->GetNumberOfCells(), last[0], last[1], last[2], a ? a->GetName() : "-");
    } else if (type == "TRANSFORM") {
      igtl::TransformMessage::Pointer m = igtl::TransformMessage::New();
      if (!unpack(socket, h, m)) { printf("BADCRC %s\n", dev.c_str()); continue; }
      igtl::Matrix4x4 mm;
      m->GetMatrix(mm);
      printf("TRANSFORM %s %g %g %g\n", dev.c_str(), mm[0][3], mm[1][3], mm[2][3]);
    } else {
      socket->Skip(h->GetBodySizeToRead(), 0);
      printf("OTHER %s %s\n", type.c_str(), dev.c_str());
    }
    fflush(stdout);
  }
  socket->CloseSocket();
  return 0;
}
