import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.channels.FileChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * The link's own throughput, for bench/net-resync.sh: a plain TCP copy of a file's bytes.
 * Run as a single-file program (java LinkCopy.java ...):
 *   sink ADDR PORT [FILE]     accept one connection, read to EOF, print "received N bytes in S s";
 *                             with FILE: write what arrives into FILE from its start (over what
 *                             it holds: not truncated) and fdatasync it before closing (the copy
 *                             a resync must at least make: onto the disk)
 *   send HOST PORT FILE       send the file (FileChannel.transferTo: sendfile), print "sent N bytes in S s"
 */
public class LinkCopy {
    public static void main(String[] a) throws Exception {
        if (a[0].equals("sink")) {
            try (ServerSocket ss = new ServerSocket()) {
                ss.setReuseAddress(true);
                ss.bind(new InetSocketAddress(a[1], Integer.parseInt(a[2])));
                System.out.println("listening");
                System.out.flush();
                try (Socket s = ss.accept(); InputStream in = s.getInputStream()) {
                    byte[] b = new byte[1 << 20];
                    long n = 0, t0 = System.nanoTime();
                    if (a.length > 3) {
                        try (FileChannel f = FileChannel.open(Path.of(a[3]), StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
                            java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(b);
                            for (int r; (r = in.read(b)) > 0; ) {
                                bb.clear().limit(r);
                                while (bb.hasRemaining()) f.write(bb);
                                n += r;
                            }
                            f.force(false);
                        }
                    } else {
                        for (int r; (r = in.read(b)) > 0; ) n += r;
                    }
                    System.out.printf("received %d bytes in %.3f s%n", n, (System.nanoTime() - t0) / 1e9);
                }
            }
        } else {
            try (FileChannel f = FileChannel.open(Path.of(a[3]), StandardOpenOption.READ);
                 SocketChannel s = SocketChannel.open(new InetSocketAddress(a[1], Integer.parseInt(a[2])))) {
                long size = f.size(), done = 0, t0 = System.nanoTime();
                while (done < size) done += f.transferTo(done, size - done, s);
                s.shutdownOutput();
                s.socket().getInputStream().read(); // the sink closes when it has read everything
                System.out.printf("sent %d bytes in %.3f s%n", done, (System.nanoTime() - t0) / 1e9);
            }
        }
    }
}
