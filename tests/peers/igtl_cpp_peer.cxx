// The C++ reference library (Debian's libopenigtlink-dev) as a client of stylet_igtl::server:
// sends TRANSFORM, STRING, POINT, STATUS and IMAGE, then receives what the server sends back and
// prints one line per message (CRC checked by the library's Unpack). Built and run by
// crates/stylet-igtl/tests/server.rs:  g++ igtl_cpp_peer.cxx -I/usr/include/openigtlink -lOpenIGTLink
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <unistd.h>

#include "igtlClientSocket.h"
#include "igtlImageMessage.h"
#include "igtlMessageHeader.h"
#include "igtlOSUtil.h"
#include "igtlPointMessage.h"
#include "igtlStatusMessage.h"
#include "igtlStringMessage.h"
#include "igtlTransformMessage.h"

template <class M> static void send(igtl::ClientSocket::Pointer& s, M& m) {
  m->Pack();
  s->Send(m->GetPackPointer(), m->GetPackSize());
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  alarm(30);
  igtl::ClientSocket::Pointer socket = igtl::ClientSocket::New();
  if (socket->ConnectToServer("127.0.0.1", atoi(argv[1])) != 0) {
    fprintf(stderr, "cannot connect\n");
    return 2;
  }
  igtl::TransformMessage::Pointer tm = igtl::TransformMessage::New();
  tm->SetDeviceName("CLB_0001");
  igtl::Matrix4x4 m;
  igtl::IdentityMatrix(m);
  m[0][3] = 10; m[1][3] = 20; m[2][3] = 30;
  tm->SetMatrix(m);
  send(socket, tm);

  igtl::StringMessage::Pointer sm = igtl::StringMessage::New();
  sm->SetDeviceName("CMD_0002");
  sm->SetString("PLANNING");
  send(socket, sm);

  igtl::PointMessage::Pointer pm = igtl::PointMessage::New();
  pm->SetDeviceName("PLAN");
  for (int k = 0; k < 2; k++) {
    igtl::PointElement::Pointer e = igtl::PointElement::New();
    e->SetName(k == 0 ? "entry" : "target");
    e->SetGroupName("Landmark");
    e->SetRGBA(255, 0, 0, 255);
    e->SetPosition(1.0f + 3 * k, 2.0f + 3 * k, 3.0f + 3 * k);
    e->SetRadius(2.0f);
    e->SetOwner("");
    pm->AddPointElement(e);
  }
  send(socket, pm);

  igtl::StatusMessage::Pointer st = igtl::StatusMessage::New();
  st->SetDeviceName("SCANNER");
  st->SetCode(igtl::StatusMessage::STATUS_OK);
  st->SetSubCode(7);
  st->SetErrorName("NONE");
  st->SetStatusString("scanner ready");
  send(socket, st);

  igtl::ImageMessage::Pointer im = igtl::ImageMessage::New();
  im->SetDimensions(4, 3, 2);
  im->SetSpacing(1.0f, 1.0f, 1.0f);
  im->SetScalarTypeToInt16();
  im->SetEndian(igtl::ImageMessage::ENDIAN_LITTLE);  // the shorts below are in host order
  im->SetDeviceName("CT_IN");
  im->SetSubVolume(4, 3, 2, 0, 0, 0);
  im->AllocateScalars();
  short* px = (short*)im->GetScalarPointer();
  for (int i = 0; i < 24; i++) px[i] = (short)i;
  send(socket, im);
  printf("SENT\n");
  fflush(stdout);

  std::set<std::string> want = {"ACK_0002", "CURRENT_POSITION", "NOTE", "PLAN_OUT", "MOVE_TO_TARGET", "CT_SLICE"};
  while (!want.empty()) {
    igtl::MessageHeader::Pointer h = igtl::MessageHeader::New();
    h->InitPack();
    int r = socket->Receive(h->GetPackPointer(), h->GetPackSize());
    if (r != h->GetPackSize()) { fprintf(stderr, "connection closed\n"); return 1; }
    h->Unpack();
    std::string type = h->GetDeviceType(), dev = h->GetDeviceName();
    want.erase(dev);
    if (type == "TRANSFORM") {
      igtl::TransformMessage::Pointer t = igtl::TransformMessage::New();
      t->SetMessageHeader(h); t->AllocatePack();
      socket->Receive(t->GetPackBodyPointer(), t->GetPackBodySize());
      if (!(t->Unpack(1) & igtl::MessageHeader::UNPACK_BODY)) { printf("BADCRC %s\n", dev.c_str()); continue; }
      igtl::Matrix4x4 mm; t->GetMatrix(mm);
      printf("TRANSFORM %s %g %g %g %g\n", dev.c_str(), mm[0][0], mm[0][3], mm[1][3], mm[2][3]);
    } else if (type == "STRING") {
      igtl::StringMessage::Pointer s = igtl::StringMessage::New();
      s->SetMessageHeader(h); s->AllocatePack();
      socket->Receive(s->GetPackBodyPointer(), s->GetPackBodySize());
      if (!(s->Unpack(1) & igtl::MessageHeader::UNPACK_BODY)) { printf("BADCRC %s\n", dev.c_str()); continue; }
      printf("STRING %s %s\n", dev.c_str(), s->GetString());
    } else if (type == "STATUS") {
      igtl::StatusMessage::Pointer s = igtl::StatusMessage::New();
      s->SetMessageHeader(h); s->AllocatePack();
      socket->Receive(s->GetPackBodyPointer(), s->GetPackBodySize());
      if (!(s->Unpack(1) & igtl::MessageHeader::UNPACK_BODY)) { printf("BADCRC %s\n", dev.c_str()); continue; }
      printf("STATUS %s %d %s\n", dev.c_str(), s->GetCode(), s->GetStatusString());
    } else if (type == "POINT") {
      igtl::PointMessage::Pointer p = igtl::PointMessage::New();
      p->SetMessageHeader(h); p->AllocatePack();
      socket->Receive(p->GetPackBodyPointer(), p->GetPackBodySize());
      if (!(p->Unpack(1) & igtl::MessageHeader::UNPACK_BODY)) { printf("BADCRC %s\n", dev.c_str()); continue; }
      printf("POINT %s", dev.c_str());
      for (int i = 0; i < p->GetNumberOfPointElement(); i++) {
        igtl::PointElement::Pointer e; p->GetPointElement(i, e);
        float x, y, z; e->GetPosition(x, y, z);
        printf(" %s:%g,%g,%g", e->GetName(), x, y, z);
      }
      printf("\n");
    } else if (type == "IMAGE") {
      igtl::ImageMessage::Pointer i = igtl::ImageMessage::New();
      i->SetMessageHeader(h); i->AllocatePack();
      socket->Receive(i->GetPackBodyPointer(), i->GetPackBodySize());
      if (!(i->Unpack(1) & igtl::MessageHeader::UNPACK_BODY)) { printf("BADCRC %s\n", dev.c_str()); continue; }
      int d[3]; i->GetDimensions(d);
      unsigned char* q = (unsigned char*)i->GetScalarPointer();
      long sum = 0;
      for (int k = 0; k < d[0] * d[1] * d[2]; k++) sum += q[k];
      printf("IMAGE %s %dx%dx%d type %d sum %ld\n", dev.c_str(), d[0], d[1], d[2], i->GetScalarType(), sum);
    } else {
      socket->Skip(h->GetBodySizeToRead(), 0);
      printf("OTHER %s %s\n", type.c_str(), dev.c_str());
    }
    fflush(stdout);
  }
  socket->CloseSocket();
  return 0;
}
