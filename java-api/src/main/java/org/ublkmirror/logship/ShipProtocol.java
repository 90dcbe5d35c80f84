package org.ublkmirror.logship;

import org.ublkmirror.leg.Crc;

import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.UUID;

/**
 * The log-shipping protocol between a mirror and a log receiver, version 1. Everything is
 * big-endian. The client sends a request frame, the receiver answers with one frame; a
 * connection may carry any number of requests, one at a time.
 *
 * <pre>
 * frame:   offset size field
 *               0    4 magic "UMLS"
 *               4    2 protocol version = 1
 *               6    2 type
 *               8    4 payload length (at most MAX_PAYLOAD)
 *              12    4 CRC32C of bytes [0, 12) and of the payload
 *              16    n payload
 *
 * requests                      payload
 *   PUT    1  name length u16 | name UTF-8 | tracking-log record (TrackingLogFormat, to the end)
 *   GET    2  selector: kind u8 (1 = by name: length u16 | UTF-8; 2 = by volume: UUID msb u64 | lsb u64)
 *   LIST   3  (empty)
 * answers
 *   STORED 0x81  sequence held now u64 | stored u8 (1: written; 0: the same record was held already)
 *   RECORD 0x82  name length u16 | name | received ms u64 | record (to the end)
 *   LIST   0x83  count u32, then per log: UUID msb u64 | lsb u64 | sequence u64 | received ms u64 |
 *                dirty blocks u64 | record length u32 | name length u16 | name
 *   ERROR  0xFF  code u16 | message UTF-8 (to the end)
 * </pre>
 *
 * A frame with a wrong magic, CRC or length is answered with ERROR {@link #E_BAD_FRAME} and the
 * connection is closed (its framing cannot be trusted); a frame of another version with ERROR
 * {@link #E_VERSION}. The record inside a PUT carries its own magic, version, volume UUID,
 * sequence and CRC; the receiver decodes it completely before it keeps it.
 */
public final class ShipProtocol {
    public static final int MAGIC = 0x554d4c53; // "UMLS"
    public static final int VERSION = 1;
    public static final int OFF_MAGIC = 0, OFF_VERSION = 4, OFF_TYPE = 6, OFF_LENGTH = 8, OFF_CRC = 12, HEADER = 16;
    /** Far above any record a leg's slot can hold (a 1 TiB volume, 0.1 % random: ~0.6 MiB). */
    public static final int MAX_PAYLOAD = 256 << 20;
    public static final int MAX_NAME = 255;

    public static final int PUT = 1, GET = 2, LIST = 3;
    public static final int STORED = 0x81, RECORD = 0x82, LISTING = 0x83, ERROR = 0xFF;
    public static final int SEL_NAME = 1, SEL_VOLUME = 2;

    /** ERROR codes. */
    public static final int E_BAD_FRAME = 1, E_VERSION = 2, E_CORRUPT_RECORD = 3, E_FOREIGN = 4, E_STALE = 5,
            E_NOT_FOUND = 6, E_IO = 7, E_BAD_REQUEST = 8;

    private ShipProtocol() {
    }

    /** A decoded frame. */
    public record Frame(int version, int type, byte[] payload) {
    }

    /** A frame that fails its checks; {@code code} is the ERROR code to answer with. */
    public static final class BadFrameException extends IOException {
        public final int code;

        public BadFrameException(int code, String message) {
            super(message);
            this.code = code;
        }
    }

    public static byte[] encode(int type, byte[] payload) {
        if (payload.length > MAX_PAYLOAD) {
            throw new IllegalArgumentException("payload of " + payload.length + " bytes exceeds " + MAX_PAYLOAD);
        }
        ByteBuffer b = ByteBuffer.allocate(HEADER + payload.length);
        b.putInt(MAGIC).putShort((short) VERSION).putShort((short) type).putInt(payload.length);
        b.position(HEADER);
        b.put(payload);
        b.putInt(OFF_CRC, crc(b.array(), payload.length));
        return b.array();
    }

    static int crc(byte[] frame, int payloadLength) {
        java.util.zip.CRC32C c = new java.util.zip.CRC32C();
        c.update(frame, 0, OFF_CRC);
        c.update(frame, HEADER, payloadLength);
        return (int) c.getValue();
    }

    public static void write(OutputStream out, int type, byte[] payload) throws IOException {
        out.write(encode(type, payload));
        out.flush();
    }

    /**
     * Reads one frame; null at a clean end of stream (before the first byte of a frame).
     *
     * @throws BadFrameException if the magic, version, length or CRC is wrong
     */
    public static Frame read(DataInputStream in) throws IOException {
        byte[] h = new byte[HEADER];
        int first = in.read();
        if (first < 0) return null;
        h[0] = (byte) first;
        in.readFully(h, 1, HEADER - 1);
        ByteBuffer b = ByteBuffer.wrap(h);
        if (b.getInt(OFF_MAGIC) != MAGIC) {
            throw new BadFrameException(E_BAD_FRAME, "not a log-shipping frame (magic " + Integer.toHexString(b.getInt(OFF_MAGIC)) + ")");
        }
        int version = b.getShort(OFF_VERSION) & 0xffff;
        int type = b.getShort(OFF_TYPE) & 0xffff;
        long len = b.getInt(OFF_LENGTH) & 0xffffffffL;
        if (len > MAX_PAYLOAD) {
            throw new BadFrameException(E_BAD_FRAME, "frame payload of " + len + " bytes exceeds the limit of " + MAX_PAYLOAD);
        }
        byte[] all = new byte[HEADER + (int) len];
        System.arraycopy(h, 0, all, 0, HEADER);
        try {
            in.readFully(all, HEADER, (int) len);
        } catch (EOFException e) {
            throw new BadFrameException(E_BAD_FRAME, "frame truncated: connection ended inside a " + len + "-byte payload");
        }
        if (crc(all, (int) len) != b.getInt(OFF_CRC)) {
            throw new BadFrameException(E_BAD_FRAME, "frame CRC mismatch (damaged in transit)");
        }
        if (version != VERSION) {
            throw new BadFrameException(E_VERSION, "protocol version " + version + " is not supported (this side speaks " + VERSION + ")");
        }
        byte[] payload = new byte[(int) len];
        System.arraycopy(all, HEADER, payload, 0, (int) len);
        return new Frame(version, type, payload);
    }

    // ------------------------------------------------------------------ payload helpers

    static void putName(ByteBuffer b, String name) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        b.putShort((short) n.length).put(n);
    }

    static String getName(ByteBuffer b) throws BadFrameException {
        if (b.remaining() < 2) throw new BadFrameException(E_BAD_REQUEST, "payload too short for a name");
        int n = b.getShort() & 0xffff;
        if (n > MAX_NAME || n > b.remaining()) throw new BadFrameException(E_BAD_REQUEST, "name length " + n + " is invalid");
        byte[] s = new byte[n];
        b.get(s);
        return new String(s, StandardCharsets.UTF_8);
    }

    static int nameBytes(String name) {
        return 2 + name.getBytes(StandardCharsets.UTF_8).length;
    }

    public static byte[] put(String name, byte[] record) {
        ByteBuffer b = ByteBuffer.allocate(nameBytes(name) + record.length);
        putName(b, name);
        b.put(record);
        return b.array();
    }

    public static byte[] getByName(String name) {
        ByteBuffer b = ByteBuffer.allocate(1 + nameBytes(name));
        b.put((byte) SEL_NAME);
        putName(b, name);
        return b.array();
    }

    public static byte[] getByVolume(UUID volume) {
        return ByteBuffer.allocate(17).put((byte) SEL_VOLUME).putLong(volume.getMostSignificantBits())
                .putLong(volume.getLeastSignificantBits()).array();
    }

    public static byte[] error(int code, String message) {
        byte[] m = message.getBytes(StandardCharsets.UTF_8);
        return ByteBuffer.allocate(2 + m.length).putShort((short) code).put(m).array();
    }

    static byte[] rest(ByteBuffer b) {
        byte[] r = new byte[b.remaining()];
        b.get(r);
        return r;
    }

    public static String errorName(int code) {
        return switch (code) {
            case E_BAD_FRAME -> "bad frame";
            case E_VERSION -> "unsupported version";
            case E_CORRUPT_RECORD -> "corrupt record";
            case E_FOREIGN -> "foreign volume";
            case E_STALE -> "older record";
            case E_NOT_FOUND -> "not found";
            case E_IO -> "receiver I/O error";
            case E_BAD_REQUEST -> "bad request";
            default -> "error " + code;
        };
    }
}
