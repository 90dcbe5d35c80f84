package org.ublkmirror.daemon;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The control socket's encoding: maps, lists, strings, longs, doubles, booleans and null,
 * each value a type byte then its body (big-endian). Requests are maps with a "verb"; answers are
 * zero or more progress maps ("progress": true) then one final map with "exit" (0 = done) and
 * "error" or "result".
 */
public final class Wire {
    private Wire() {
    }

    public static void write(DataOutputStream out, Object v) throws IOException {
        if (v == null) {
            out.writeByte('N');
        } else if (v instanceof String s) {
            byte[] b = s.getBytes(java.nio.charset.StandardCharsets.UTF_8);
            out.writeByte('S');
            out.writeInt(b.length);
            out.write(b);
        } else if (v instanceof Boolean b) {
            out.writeByte('B');
            out.writeBoolean(b);
        } else if (v instanceof Double || v instanceof Float) {
            out.writeByte('D');
            out.writeDouble(((Number) v).doubleValue());
        } else if (v instanceof Number n) {
            out.writeByte('J');
            out.writeLong(n.longValue());
        } else if (v instanceof Map<?, ?> m) {
            out.writeByte('M');
            out.writeInt(m.size());
            for (Map.Entry<?, ?> e : m.entrySet()) {
                write(out, String.valueOf(e.getKey()));
                write(out, e.getValue());
            }
        } else if (v instanceof Collection<?> c) {
            out.writeByte('L');
            out.writeInt(c.size());
            for (Object o : c) write(out, o);
        } else {
            write(out, v.toString());
        }
    }

    public static Object read(DataInputStream in) throws IOException {
        int t = in.readUnsignedByte();
        switch (t) {
            case 'N':
                return null;
            case 'S': {
                int n = in.readInt();
                if (n < 0 || n > (64 << 20)) throw new IOException("control message too large");
                byte[] b = new byte[n];
                in.readFully(b);
                return new String(b, java.nio.charset.StandardCharsets.UTF_8);
            }
            case 'B':
                return in.readBoolean();
            case 'D':
                return in.readDouble();
            case 'J':
                return in.readLong();
            case 'M': {
                int n = in.readInt();
                Map<String, Object> m = new LinkedHashMap<>();
                for (int i = 0; i < n; i++) {
                    String k = (String) read(in);
                    m.put(k, read(in));
                }
                return m;
            }
            case 'L': {
                int n = in.readInt();
                List<Object> l = new ArrayList<>(Math.min(n, 1 << 16));
                for (int i = 0; i < n; i++) l.add(read(in));
                return l;
            }
            default:
                throw new IOException("bad control message (type byte " + t + ")");
        }
    }
}
