package org.ublkmirror.leg;

import java.nio.ByteBuffer;
import java.util.zip.CRC32C;

/** CRC32C (hardware-accelerated in the JDK) over a range of a buffer, without moving it. */
public final class Crc {
    private Crc() {
    }

    public static int of(ByteBuffer b, int from, int to) {
        CRC32C c = new CRC32C();
        ByteBuffer d = b.duplicate();
        d.limit(to).position(from);
        c.update(d);
        return (int) c.getValue();
    }

    public static int of(byte[] b, int from, int to) {
        CRC32C c = new CRC32C();
        c.update(b, from, to - from);
        return (int) c.getValue();
    }
}
