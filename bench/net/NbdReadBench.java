// Reads an NBD export "e" at 127.0.0.1:PORT through NbdStore (the mirror's client), 8 threads of 1 MiB
// reads, three rounds; prints MB/s per round. java -cp java-api/target/classes:cli/target/mirrorctl.jar bench/net/NbdReadBench.java PORT
// (bench/RESULTS.md, issue #5 part 6, "The payload path").
import org.ublkmirror.gateway.NbdStore;
import java.nio.ByteBuffer;
import java.util.concurrent.*;

public class NbdReadBench {
    public static void main(String[] a) throws Exception {
        int port = Integer.parseInt(a[0]);
        try (NbdStore s = NbdStore.connect("127.0.0.1", port, "e")) {
            long size = s.size();
            for (int round = 0; round < 3; round++) {
                long t0 = System.nanoTime();
                ExecutorService ex = Executors.newFixedThreadPool(8);
                java.util.List<Future<?>> fs = new java.util.ArrayList<>();
                for (int t = 0; t < 8; t++) {
                    int tt = t;
                    fs.add(ex.submit(() -> {
                        ByteBuffer b = ByteBuffer.allocateDirect(1 << 20);
                        for (long p = (long) tt << 20; p < size; p += 8L << 20) { b.clear(); s.read(p, b); }
                        return null;
                    }));
                }
                for (Future<?> f : fs) f.get();
                ex.shutdown();
                double sec = (System.nanoTime() - t0) / 1e9;
                System.out.printf("round %d: %.1f MB/s%n", round, size / 1e6 / sec);
            }
        }
    }
}
