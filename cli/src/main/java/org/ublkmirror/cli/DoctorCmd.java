package org.ublkmirror.cli;

import org.ublkmirror.frontend.KernelProbe;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "doctor", description = {"What this kernel offers (ublk and its features, io_uring, FUSE, loop), what is missing, how to fix it.",
        "Exit 0 when at least one frontend can run."})
final class DoctorCmd implements Callable<Integer> {
    @Option(names = "--json", description = "Machine-readable output.")
    boolean json;

    @Override
    public Integer call() {
        KernelProbe probe = new KernelProbe();
        List<KernelProbe.Finding> all = new ArrayList<>(probe.all());
        try {
            all.addAll(1, org.ublkmirror.frontend.ublk.UblkProbe.findings(probe));
        } catch (LinkageError e) {
            all.add(1, new KernelProbe.Finding("ublk-feat", false, "cannot probe: " + e.getMessage(), "rebuild with make build"));
        }
        String auto = probe.autoFrontend();
        if (json) {
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("kernel", probe.kernelRelease());
            List<Object> fs = new ArrayList<>();
            for (KernelProbe.Finding f : all) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("name", f.name());
                m.put("ok", f.ok());
                m.put("detail", f.detail());
                m.put("fix", f.fix().isEmpty() ? null : f.fix());
                fs.add(m);
            }
            out.put("findings", fs);
            out.put("auto_frontend", auto);
            System.out.println(Json.write(out));
        } else {
            System.out.println("kernel " + probe.kernelRelease());
            for (KernelProbe.Finding f : all) {
                System.out.printf("  %-13s %-4s %s%n", f.name(), f.ok() ? "ok" : "NO", f.detail());
                if (!f.fix().isEmpty()) System.out.printf("  %-13s      fix: %s%n", "", f.fix());
            }
            System.out.println(auto == null ? "no frontend can run here: fix one of the above"
                    : "--frontend auto picks: " + auto + (auto.equals("fuse") ? " (FUSE + loop)" : ""));
        }
        return auto == null ? Mirrorctl.STATE : Mirrorctl.OK;
    }
}
