package org.ublkmirror.sys;

import com.kenai.jffi.MemoryIO;
import jnr.ffi.LibraryLoader;
import jnr.ffi.annotations.IgnoreError;
import org.roaringbitmap.longlong.Roaring64NavigableMap;
import org.ublkmirror.frontend.ublk.UblkNative;
import org.ublkmirror.resync.Extent;

import java.io.DataOutput;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The resync loops of native/'s libublkmirror.so (ubm_copy_range, ubm_scan_portable64,
 * ubm_fadvise; see native/src/ublkmirror.h), for issue #4 part 1's measurement
 * (bench/NativeLoopsBench). Looked up where {@link UblkNative} looks; {@link #load()} answers
 * null when the library is absent or too old, so callers keep their Java path.
 */
public final class NativeLoops {
    public static final int ABI = 1;
    public static final int COPY_NO_CFR = 1;
    public static final int POSIX_FADV_DONTNEED = 4;

    /** The jnr-ffi binding; addresses are passed as longs (direct buffers, native memory). */
    public interface Lib {
        @IgnoreError
        int ubm_loops_abi();

        @IgnoreError
        long ubm_copy_range(int fdIn, long offIn, int fdOut, long offOut, long len, long buf, long buflen, int flags);

        @IgnoreError
        int ubm_fadvise(int fd, long off, long len, int advice);

        @IgnoreError
        long ubm_scan_portable64(long buf, long len, long maxBlocks, long out, long cap);
    }

    private final Lib lib;

    private NativeLoops(Lib lib) {
        this.lib = lib;
    }

    private static volatile NativeLoops shared;
    private static volatile boolean tried;

    /** The library from UblkNative's search path, or null if absent or of another ABI. */
    public static NativeLoops load() {
        if (!tried) {
            synchronized (NativeLoops.class) {
                if (!tried) {
                    shared = loadFrom(UblkNative.Holder.candidates());
                    tried = true;
                }
            }
        }
        return shared;
    }

    /** The first of {@code candidates} that loads and answers our ABI, or null. */
    public static NativeLoops loadFrom(List<Path> candidates) {
        for (Path p : candidates) {
            if (!Files.isRegularFile(p)) continue;
            try {
                Lib l = LibraryLoader.create(Lib.class).search(p.getParent().toString()).failImmediately()
                        .load(libName(p));
                if (l.ubm_loops_abi() == ABI) return new NativeLoops(l);
            } catch (LinkageError | RuntimeException e) {
                // absent symbol (an older shim) or not loadable: try the next one
            }
        }
        return null;
    }

    private static String libName(Path p) {
        String n = p.getFileName().toString();
        if (n.startsWith("lib")) n = n.substring(3);
        int dot = n.indexOf(".so");
        return dot >= 0 ? n.substring(0, dot) : n;
    }

    public Lib lib() {
        return lib;
    }

    static long address(ByteBuffer b) {
        if (!b.isDirect()) throw new IllegalArgumentException("need a direct buffer");
        return MemoryIO.getInstance().getDirectBufferAddress(b);
    }

    /**
     * Copies {@code len} bytes between descriptors in the kernel (copy_file_range), or through
     * {@code buf} (direct) where it refuses; throws with errno text on failure.
     */
    public void copy(int fdIn, long offIn, int fdOut, long offOut, long len, ByteBuffer buf, int flags, String what)
            throws IOException {
        long r = lib.ubm_copy_range(fdIn, offIn, fdOut, offOut, len, address(buf), buf.capacity(), flags);
        if (r != len) {
            throw new IOException(what + ": copy of " + len + " bytes at " + offIn + " failed: "
                    + (r < 0 ? LibC.get().strerror((int) -r) : "short copy of " + r + " bytes"));
        }
    }

    public int fadvise(int fd, long off, long len, int advice) {
        return lib.ubm_fadvise(fd, off, len, advice);
    }

    /**
     * Same result as {@code Extents.of(dirty, maxBlocks)}: serializes the map (portable format)
     * into native memory and scans its containers there, run by run.
     */
    public List<Extent> extents(Roaring64NavigableMap dirty, long maxBlocks) {
        ByteBuffer ser = serializePortable(dirty);
        // first guess: one extent per 256 blocks, at most 64 Ki; the scan counts past cap, so one retry at the exact size
        long card = dirty.getLongCardinality();
        long cap = Math.max(1, Math.min(card, Math.min(1L << 16, card / Math.max(1, maxBlocks) + 1024)));
        ByteBuffer out = ByteBuffer.allocateDirect((int) (cap * 16)).order(ByteOrder.nativeOrder());
        long n = lib.ubm_scan_portable64(address(ser), ser.limit(), maxBlocks, address(out), cap);
        if (n > cap && n <= (Integer.MAX_VALUE - 8) / 16) {
            cap = n;
            out = ByteBuffer.allocateDirect((int) (cap * 16)).order(ByteOrder.nativeOrder());
            n = lib.ubm_scan_portable64(address(ser), ser.limit(), maxBlocks, address(out), cap);
        }
        if (n < 0) throw new IllegalStateException("native scan rejected the bitmap: " + LibC.get().strerror((int) -n));
        if (n > cap) throw new IllegalStateException("native scan: " + n + " extents, more than " + cap);
        List<Extent> list = new ArrayList<>((int) n);
        for (int i = 0; i < n; i++) {
            list.add(new Extent(out.getLong(16 * i), out.getLong(16 * i + 8)));
        }
        return list;
    }

    /** Roaring64NavigableMap.serializePortable into a new direct buffer (flipped). */
    public static ByteBuffer serializePortable(Roaring64NavigableMap m) {
        ByteBuffer b = ByteBuffer.allocateDirect((int) Math.min(Integer.MAX_VALUE - 8, m.serializedSizeInBytes() + 16));
        try {
            m.serializePortable(new BufferOutput(b));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return b.flip();
    }

    /** DataOutput over a ByteBuffer (big-endian, as DataOutput defines; Roaring byte-swaps itself). */
    static final class BufferOutput implements DataOutput {
        private final ByteBuffer b;

        BufferOutput(ByteBuffer b) {
            this.b = b;
        }

        @Override public void write(int v) { b.put((byte) v); }
        @Override public void write(byte[] a) { b.put(a); }
        @Override public void write(byte[] a, int off, int len) { b.put(a, off, len); }
        @Override public void writeBoolean(boolean v) { b.put((byte) (v ? 1 : 0)); }
        @Override public void writeByte(int v) { b.put((byte) v); }
        @Override public void writeShort(int v) { b.putShort((short) v); }
        @Override public void writeChar(int v) { b.putChar((char) v); }
        @Override public void writeInt(int v) { b.putInt(v); }
        @Override public void writeLong(long v) { b.putLong(v); }
        @Override public void writeFloat(float v) { b.putFloat(v); }
        @Override public void writeDouble(double v) { b.putDouble(v); }
        @Override public void writeBytes(String s) { for (int i = 0; i < s.length(); i++) b.put((byte) s.charAt(i)); }
        @Override public void writeChars(String s) { for (int i = 0; i < s.length(); i++) b.putChar(s.charAt(i)); }
        @Override public void writeUTF(String s) { throw new UnsupportedOperationException(); }
    }
}
