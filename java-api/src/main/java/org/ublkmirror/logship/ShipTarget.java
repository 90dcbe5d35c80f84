package org.ublkmirror.logship;

import org.ublkmirror.gateway.Tls;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * Where a mirror ships its tracking log on the network: a log receiver's HOST:PORT and, for TLS,
 * the mirror's key store, the trust store naming the receiver (or its CA) and a file whose first
 * line is the password of both (PKCS#12, as for the gateway).
 */
public record ShipTarget(String address, Path keyStore, Path trustStore, Path passwordFile) {
    public ShipTarget {
        ReceiverClient.parse(address); // refuses a malformed address now, not at the first ship
        boolean any = keyStore != null || trustStore != null || passwordFile != null;
        if (any && (keyStore == null || trustStore == null || passwordFile == null)) {
            throw new IllegalArgumentException("TLS to the log receiver needs a key store, a trust store and a password file together");
        }
    }

    public ShipTarget(String address) {
        this(address, null, null, null);
    }

    public boolean tls() {
        return keyStore != null;
    }

    public InetSocketAddress socketAddress() {
        return ReceiverClient.parse(address);
    }

    /** Client options with the TLS context loaded (key stores read now). */
    public ReceiverClient.Options options(ReceiverClient.Options base) throws IOException {
        if (!tls()) return base;
        if (!Files.exists(passwordFile)) throw new NoSuchFileException(passwordFile.toString(), null, "no such password file");
        String pw = Files.readAllLines(passwordFile).stream().findFirst().orElse("");
        return base.withTls(Tls.context(keyStore, pw.toCharArray(), trustStore, pw.toCharArray()));
    }

    public ReceiverClient client(ReceiverClient.Options base) throws IOException {
        InetSocketAddress a = socketAddress();
        return new ReceiverClient(a.getHostString(), a.getPort(), options(base));
    }
}
