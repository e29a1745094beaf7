/* Peer-to-peer media for small calls (up to 4 people): one RTCPeerConnection per other
   participant, signaling through the call socket (docs/media.md). No build step.

   The media interface (what room.js uses; an SFU client module would offer the same):
     var media = RoomMedia.create(kind)         // "mesh" today
     media.on("stream", fn(peerId, MediaStream)) // a remote participant's media (audio+video)
     media.on("state", fn(peerId, connectionState))
     media.start(mediaInfo, signalingSend, localStream, ownId)
                                                // joined.media, signalingSend(to, data), and
                                                // joined.user_session_id
     media.addPeer(peerId, {initiator: true})   // we make the offer (the newcomer)
     media.removePeer(peerId)
     media.onSignal(fromPeerId, data)           // a signal from the socket (unknown peer: answer)
     media.replaceTrack(kind, trackOrNull)      // device switch, camera off/on: no renegotiation
     media.peers()                              // ids with a connection
     media.stats()                              // Promise of {peerId: {audio: {...}, video: {...},
                                                //   outbound: {...}, rtt: seconds or null}}
     media.close()

   Perfect negotiation (the W3C pattern): the polite peer is the one whose id sorts lower;
   both may renegotiate. Each connection has an audio and a video transceiver from the start,
   sending when there is a track, so a participant without a camera still receives video and
   a camera switched on later needs at most one renegotiation. ICE restart: when a connection
   fails (or stays disconnected for DISCONNECTED_GRACE_MS) the impolite side restarts ICE. */
(function () {
  "use strict";

  var DISCONNECTED_GRACE_MS = 3000;
  var KINDS = ["audio", "video"];

  function Emitter() {
    var handlers = {};
    return {
      on: function (name, fn) {
        (handlers[name] = handlers[name] || []).push(fn);
      },
      emit: function (name) {
        var args = Array.prototype.slice.call(arguments, 1);
        (handlers[name] || []).forEach(function (fn) {
          fn.apply(null, args);
        });
      },
    };
  }

  function createMesh() {
    var events = Emitter();
    var peers = new Map();
    var iceServers = [];
    var send = null;
    var local = null;
    var selfId = null;
    var closed = false;

    var chosen = {}; // kind → the track replaceTrack put in place (a shared screen, none)

    function localTrack(kind) {
      if (kind in chosen) return chosen[kind];
      if (!local) return null;
      var tracks = kind === "audio" ? local.getAudioTracks() : local.getVideoTracks();
      return tracks.length ? tracks[0] : null;
    }

    // Start sending `track` (or nothing) on a transceiver; "sendrecv" or "recvonly".
    function useTrack(transceiver, track) {
      transceiver.sender.replaceTrack(track).catch(function () {
        /* the connection closed meanwhile */
      });
      var wanted = track ? "sendrecv" : "recvonly";
      // Switching off keeps "sendrecv" (no renegotiation); switching on may need one.
      if (track && transceiver.direction !== wanted && transceiver.direction !== "stopped") {
        transceiver.direction = wanted;
      }
    }

    function bindTransceivers(peer) {
      KINDS.forEach(function (kind) {
        if (peer.tx[kind]) return;
        var found = peer.pc.getTransceivers().find(function (t) {
          return t.receiver.track && t.receiver.track.kind === kind && !t.stopped;
        });
        if (found) {
          peer.tx[kind] = found;
          useTrack(found, localTrack(kind));
        }
      });
    }

    function signal(peer, data) {
      if (!closed && send) send(peer.id, data);
    }

    function newPeer(id, initiator) {
      var pc = new RTCPeerConnection({ iceServers: iceServers });
      var peer = {
        id: id,
        pc: pc,
        polite: selfId < id,
        makingOffer: false,
        ignoreOffer: false,
        tx: {},
        stream: new MediaStream(),
        queue: Promise.resolve(),
        disconnectedTimer: null,
      };
      peers.set(id, peer);

      pc.ontrack = function (event) {
        if (peer.stream.getTracks().indexOf(event.track) < 0) peer.stream.addTrack(event.track);
        events.emit("stream", id, peer.stream);
      };
      pc.onicecandidate = function (event) {
        if (event.candidate) signal(peer, { candidate: event.candidate.toJSON() });
      };
      pc.onnegotiationneeded = function () {
        peer.makingOffer = true;
        pc.setLocalDescription()
          .then(function () {
            signal(peer, { description: pc.localDescription.toJSON() });
          })
          .catch(function () {
            /* superseded by a remote offer (perfect negotiation) */
          })
          .then(function () {
            peer.makingOffer = false;
          });
      };
      pc.oniceconnectionstatechange = function () {
        var state = pc.iceConnectionState;
        clearTimeout(peer.disconnectedTimer);
        if (state === "failed") {
          restart(peer);
        } else if (state === "disconnected") {
          peer.disconnectedTimer = setTimeout(function () {
            if (pc.iceConnectionState === "disconnected") restart(peer);
          }, DISCONNECTED_GRACE_MS);
        }
      };
      pc.onconnectionstatechange = function () {
        events.emit("state", id, pc.connectionState);
      };

      if (initiator) {
        // The offerer: an audio and a video transceiver from the start (negotiationneeded).
        // addTrack where there is a track: should the other side offer at the same time, its
        // offer reuses these instead of adding more.
        KINDS.forEach(function (kind) {
          var track = localTrack(kind);
          if (track) {
            var sender = pc.addTrack(track, local);
            peer.tx[kind] = pc.getTransceivers().find(function (t) {
              return t.sender === sender;
            });
          } else {
            peer.tx[kind] = pc.addTransceiver(kind, { direction: "recvonly" });
          }
        });
      }
      return peer;
    }

    function restart(peer) {
      if (closed || peer.polite) return; // the impolite side restarts; the other follows
      peer.pc.restartIce();
    }

    async function handleSignal(peer, data) {
      var pc = peer.pc;
      if (data.description) {
        var description = data.description;
        var collision =
          description.type === "offer" && (peer.makingOffer || pc.signalingState !== "stable");
        peer.ignoreOffer = !peer.polite && collision;
        if (peer.ignoreOffer) return;
        await pc.setRemoteDescription(description);
        if (description.type === "offer") {
          bindTransceivers(peer); // an answerer starts sending on the offered transceivers
          await pc.setLocalDescription();
          signal(peer, { description: pc.localDescription.toJSON() });
        }
      } else if (data.candidate) {
        try {
          await pc.addIceCandidate(data.candidate);
        } catch (e) {
          if (!peer.ignoreOffer && pc.signalingState !== "closed") throw e;
        }
      }
    }

    function summarize(report) {
      var out = { audio: null, video: null, outbound: { audio: null, video: null }, rtt: null };
      report.forEach(function (s) {
        // The round-trip time of the pair of ICE candidates in use (seconds).
        if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
          if (s.currentRoundTripTime != null) out.rtt = s.currentRoundTripTime;
          return;
        }
        var kind = s.kind || s.mediaType;
        if (KINDS.indexOf(kind) < 0) return;
        // Summed over the connection's streams of that kind (after a renegotiation there
        // may be more than one).
        if (s.type === "inbound-rtp") {
          var inbound = out[kind] || {
            bytesReceived: 0,
            packetsReceived: 0,
            packetsLost: 0,
            framesDecoded: 0,
            frameWidth: 0,
          };
          inbound.bytesReceived += s.bytesReceived || 0;
          inbound.packetsReceived += s.packetsReceived || 0;
          inbound.packetsLost += s.packetsLost || 0;
          inbound.framesDecoded += s.framesDecoded || 0;
          inbound.frameWidth = Math.max(inbound.frameWidth, s.frameWidth || 0);
          out[kind] = inbound;
        } else if (s.type === "outbound-rtp") {
          var outbound = out.outbound[kind] || { bytesSent: 0 };
          outbound.bytesSent += s.bytesSent || 0;
          out.outbound[kind] = outbound;
        }
      });
      return out;
    }

    return {
      kind: "mesh",
      on: events.on,

      start: function (media, signalingSend, localStream, ownId) {
        iceServers = (media && media.ice_servers) || [];
        send = signalingSend;
        local = localStream;
        selfId = ownId;
      },

      addPeer: function (id, options) {
        if (closed || peers.has(id)) return;
        newPeer(id, !!(options && options.initiator));
      },

      removePeer: function (id) {
        var peer = peers.get(id);
        if (!peer) return;
        peers.delete(id);
        clearTimeout(peer.disconnectedTimer);
        peer.pc.close();
      },

      onSignal: function (from, data) {
        if (closed || !data) return;
        var peer = peers.get(from);
        if (!peer) {
          if (!data.description || data.description.type !== "offer") return; // stale
          peer = newPeer(from, false);
        }
        // One signal at a time per connection, in the order they came.
        peer.queue = peer.queue
          .then(function () {
            return handleSignal(peer, data);
          })
          .catch(function () {
            /* a bad or stale signal: the connection recovers through ICE restart */
          });
      },

      replaceTrack: function (kind, track) {
        chosen[kind] = track; // what later connections send too
        peers.forEach(function (peer) {
          if (peer.tx[kind]) useTrack(peer.tx[kind], track);
        });
      },

      peers: function () {
        return Array.from(peers.keys());
      },

      // ICE restart of every connection (the path a failed connection takes by itself);
      // and the remote ICE username fragment of each, which a restart changes.
      restartIce: function () {
        peers.forEach(restart);
      },

      remoteUfrags: function () {
        var result = {};
        peers.forEach(function (peer, id) {
          var sdp = peer.pc.remoteDescription ? peer.pc.remoteDescription.sdp : "";
          var match = /a=ice-ufrag:(\S+)/.exec(sdp);
          result[id] = match ? match[1] : null;
        });
        return result;
      },

      stats: async function () {
        var result = {};
        for (var entry of peers) {
          result[entry[0]] = summarize(await entry[1].pc.getStats());
        }
        return result;
      },

      close: function () {
        closed = true;
        peers.forEach(function (peer) {
          clearTimeout(peer.disconnectedTimer);
          peer.pc.close();
        });
        peers.clear();
      },
    };
  }

  window.RoomMedia = {
    create: function (kind) {
      if (kind === "mesh") return createMesh();
      return null; // e.g. "livekit": load its client module here
    },
  };
})();
