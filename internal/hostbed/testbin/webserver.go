package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// nginxTitle is the real nginx master's process title. critest reads
// /proc/1/cmdline for "master process" to tell whether nginx or the pause
// process is PID 1 of a PID namespace.
const nginxTitle = "nginx: master process nginx -g daemon off;"

// nginx serves HTTP like critest's nginx images. critest finds it with
// `pidof nginx` (matches the executable's name, so the binary must be
// installed as nginx) and `cat /var/run/nginx.pid`.
func nginx(args []string) error {
	if !strings.HasPrefix(os.Args[0], nginxTitle) {
		// Re-exec with the title as argv[0]: Go cannot rewrite its argv
		// in place the way nginx does.
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		return syscall.Exec(exe, append([]string{nginxTitle}, args...), os.Environ())
	}
	fs := flag.NewFlagSet("nginx", flag.ContinueOnError)
	listen := fs.String("listen", ":80", "address to serve HTTP on")
	pidFile := fs.String("pidfile", "/var/run/nginx.pid", "file to write the pid to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.WriteFile(*pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	return serve(*listen, "nginx")
}

// httpd serves HTTP like critest's httpd image, whose log critest expects
// to mention "httpd".
func httpd(args []string) error {
	fs := flag.NewFlagSet("httpd", flag.ContinueOnError)
	listen := fs.String("listen", ":80", "address to serve HTTP on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return serve(*listen, "httpd")
}

func serve(addr, server string) error {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", server)
		fmt.Fprintf(w, "<html><body>%s stand-in from podvm's test images</body></html>\n", server)
	})
	// Exit promptly on the stop signal; as PID 1 nothing else would.
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
		<-sigs
		os.Exit(0)
	}()
	fmt.Printf("%s: serving HTTP on %s\n", server, addr)
	return http.ListenAndServe(addr, nil)
}
