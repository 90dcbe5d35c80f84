package org.ublkmirror.daemon;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.Consumer;

/** Talks to a running mirror's daemon over its control socket. */
public final class ControlClient {
    private ControlClient() {
    }

    public static Path socket(String name) {
        return Daemon.runDir().resolve(name + ".sock");
    }

    /** True when a daemon answers on the mirror's socket. */
    public static boolean running(String name) {
        Path s = socket(name);
        if (!Files.exists(s)) return false;
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(s));
            return true;
        } catch (IOException e) {
            return false; // a stale socket of a daemon that died
        }
    }

    /**
     * Sends a request; progress maps go to {@code progress}; returns the final map (with "exit").
     * Throws IOException when no daemon answers.
     */
    @SuppressWarnings("unchecked")
    public static Map<String, Object> call(String name, Map<String, Object> request, Consumer<Map<String, Object>> progress) throws IOException {
        Path s = socket(name);
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(s));
            DataOutputStream out = new DataOutputStream(new BufferedOutputStream(Channels.newOutputStream(ch)));
            DataInputStream in = new DataInputStream(new BufferedInputStream(Channels.newInputStream(ch)));
            Wire.write(out, request);
            out.flush();
            while (true) {
                Map<String, Object> m = (Map<String, Object>) Wire.read(in);
                if (Boolean.TRUE.equals(m.get("progress"))) {
                    if (progress != null) progress.accept(m);
                    continue;
                }
                return m;
            }
        }
    }
}
