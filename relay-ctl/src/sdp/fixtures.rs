//! SDP bodies shared by the parser's and the rewriter's tests.

pub const AUDIO_VIDEO: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.2\r\n\
s=-\r\n\
c=IN IP4 192.0.2.2\r\n\
t=0 0\r\n\
a=ice-ufrag:F7gI\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp:49171\r\n\
a=candidate:1 1 UDP 2130706431 192.0.2.2 49170 typ host\r\n\
a=ice-pwd:asd88fgpdd777uzjYhagZg\r\n\
a=sendrecv\r\n\
m=video 51372 RTP/SAVP 99\r\n\
c=IN IP4 192.0.2.3\r\n\
a=rtpmap:99 h263-1998/90000\r\n\
a=rtcp:53020 IN IP4 192.0.2.4\r\n\
a=end-of-candidates\r\n";
