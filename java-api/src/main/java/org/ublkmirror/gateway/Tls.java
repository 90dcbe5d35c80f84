package org.ublkmirror.gateway;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;

/**
 * TLS settings for both ends of the gateway: X.509 certificates in PKCS#12 key stores. Each side
 * presents the certificate in its key store and accepts a peer only if the peer's certificate
 * chains to one in its trust store; the server always requires a client certificate, and the
 * client checks that the server's certificate names the host it dialled (subject alternative name).
 */
public final class Tls {
    public static final String[] PROTOCOLS = {"TLSv1.3", "TLSv1.2"};

    private Tls() {
    }

    /** An SSLContext from a PKCS#12 key store (own certificate and key) and a trust store (CA or peer certificates). */
    public static SSLContext context(Path keyStore, char[] keyPassword, Path trustStore, char[] trustPassword) throws IOException {
        try {
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(load(keyStore, keyPassword), keyPassword);
            TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            tmf.init(load(trustStore, trustPassword));
            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
            return ctx;
        } catch (GeneralSecurityException e) {
            throw new IOException("cannot set up TLS from " + keyStore + " and " + trustStore + ": " + e.getMessage(), e);
        }
    }

    private static KeyStore load(Path p, char[] password) throws IOException, GeneralSecurityException {
        if (!Files.exists(p)) throw new NoSuchFileException(p.toString(), null, "no such key store");
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(p)) {
            ks.load(in, password);
        } catch (IOException e) {
            throw new IOException(p + ": cannot read the PKCS#12 key store (wrong password?): " + e.getMessage(), e);
        }
        return ks;
    }
}
