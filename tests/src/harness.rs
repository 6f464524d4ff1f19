//! Starting the gateway binaries and talking to them over real sockets.
