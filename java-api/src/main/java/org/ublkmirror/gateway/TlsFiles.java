package org.ublkmirror.gateway;

import javax.net.ssl.SSLContext;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * The files a TLS client end names in a mirror's configuration (as the gateway's options do):
 * its own certificate and key, the trust store naming the server (or its CA), both PKCS#12, and
 * a file whose first line is the password of both. Read again at every {@link #context()}, so
 * a renewed certificate is picked up at the next reconnect.
 */
public record TlsFiles(Path keyStore, Path trustStore, Path passwordFile) {
    public TlsFiles {
        if (keyStore == null || trustStore == null || passwordFile == null) {
            throw new IllegalArgumentException("TLS needs a key store, a trust store and a password file together");
        }
        keyStore = keyStore.toAbsolutePath().normalize();
        trustStore = trustStore.toAbsolutePath().normalize();
        passwordFile = passwordFile.toAbsolutePath().normalize();
    }

    /** Null when none of the three is given; all three or an error otherwise. */
    public static TlsFiles of(Path keyStore, Path trustStore, Path passwordFile) {
        if (keyStore == null && trustStore == null && passwordFile == null) return null;
        return new TlsFiles(keyStore, trustStore, passwordFile);
    }

    /** The client's SSLContext, key stores read now. */
    public SSLContext context() throws IOException {
        if (!Files.exists(passwordFile)) throw new NoSuchFileException(passwordFile.toString(), null, "no such password file");
        String pw = Files.readAllLines(passwordFile).stream().findFirst().orElse("");
        return Tls.context(keyStore, pw.toCharArray(), trustStore, pw.toCharArray());
    }

    /** {@code base} with this TLS context. */
    public NbdStore.Options options(NbdStore.Options base) throws IOException {
        return base.withTls(context());
    }
}
