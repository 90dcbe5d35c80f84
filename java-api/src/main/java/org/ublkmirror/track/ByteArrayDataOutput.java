package org.ublkmirror.track;

import java.io.DataOutput;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * An unsynchronized big-endian DataOutput into a growing array: serializing a bitmap through
 * DataOutputStream over ByteArrayOutputStream takes a lock per short written.
 */
final class ByteArrayDataOutput implements DataOutput {
    private byte[] buf;
    private int n;

    ByteArrayDataOutput(int capacity) {
        buf = new byte[Math.max(16, capacity)];
    }

    private void room(int k) {
        if (n + k > buf.length) {
            buf = Arrays.copyOf(buf, Math.max(n + k, buf.length * 2));
        }
    }

    byte[] toByteArray() {
        return n == buf.length ? buf : Arrays.copyOf(buf, n);
    }

    @Override
    public void write(int b) {
        room(1);
        buf[n++] = (byte) b;
    }

    @Override
    public void write(byte[] b) {
        write(b, 0, b.length);
    }

    @Override
    public void write(byte[] b, int off, int len) {
        room(len);
        System.arraycopy(b, off, buf, n, len);
        n += len;
    }

    @Override
    public void writeBoolean(boolean v) {
        write(v ? 1 : 0);
    }

    @Override
    public void writeByte(int v) {
        write(v);
    }

    @Override
    public void writeShort(int v) {
        room(2);
        buf[n++] = (byte) (v >>> 8);
        buf[n++] = (byte) v;
    }

    @Override
    public void writeChar(int v) {
        writeShort(v);
    }

    @Override
    public void writeInt(int v) {
        room(4);
        buf[n++] = (byte) (v >>> 24);
        buf[n++] = (byte) (v >>> 16);
        buf[n++] = (byte) (v >>> 8);
        buf[n++] = (byte) v;
    }

    @Override
    public void writeLong(long v) {
        writeInt((int) (v >>> 32));
        writeInt((int) v);
    }

    @Override
    public void writeFloat(float v) {
        writeInt(Float.floatToIntBits(v));
    }

    @Override
    public void writeDouble(double v) {
        writeLong(Double.doubleToLongBits(v));
    }

    @Override
    public void writeBytes(String s) {
        for (int i = 0; i < s.length(); i++) {
            write(s.charAt(i));
        }
    }

    @Override
    public void writeChars(String s) {
        for (int i = 0; i < s.length(); i++) {
            writeChar(s.charAt(i));
        }
    }

    @Override
    public void writeUTF(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        writeShort(b.length);
        write(b);
    }
}
