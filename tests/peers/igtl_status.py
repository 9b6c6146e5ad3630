"""OpenIGTLink's STATUS for pyigtl, which does not have it (pyigtl 0.3): code, subcode, error
name and text, both ways. Importing this module registers it with pyigtl's message factory.
Shared by the peer scripts in this folder."""
import struct

import pyigtl.messages as pm


class StatusMessage(pm.MessageBase):
    def __init__(self, timestamp=None, device_name=None):
        pm.MessageBase.__init__(self, timestamp=timestamp, device_name=device_name)
        self._message_type = "STATUS"
        self.code, self.subcode, self.error_name, self.status_string = 0, 0, "", ""
        self._valid_message = True

    def _pack_content(self):
        name = self.error_name.encode()[:20].ljust(20, b"\0")
        return struct.pack("> H q", self.code, self.subcode) + name + self.status_string.encode() + b"\0"

    def _unpack_content(self, content):
        self.code, self.subcode = struct.unpack("> H q", content[:10])
        self.error_name = content[10:30].split(b"\0")[0].decode()
        self.status_string = content[30:].split(b"\0")[0].decode()


pm.message_type_to_class_constructor["STATUS"] = StatusMessage
