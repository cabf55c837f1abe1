// Command naiverelay is the baseline relay of scripts/bench.sh: it accepts
// TCP connections and copies bytes both ways to one upstream with two
// io.Copy goroutines per connection, understanding nothing of the
// protocol. Whatever keyhole costs above it is the price of parsing,
// deciding and auditing (and of how keyhole relays).
//
//	naiverelay -listen 127.0.0.1:7000 -upstream 127.0.0.1:5432
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen `addr`")
	upstream := flag.String("upstream", "127.0.0.1:5432", "upstream `addr`")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	// One line for the script that started us.
	fmt.Fprintf(os.Stdout, "listening %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Print(err)
			continue
		}
		go relay(c.(*net.TCPConn), *upstream)
	}
}

func relay(client *net.TCPConn, addr string) {
	defer client.Close()
	uc, err := net.Dial("tcp", addr)
	if err != nil {
		log.Print(err)
		return
	}
	upstream := uc.(*net.TCPConn)
	defer upstream.Close()
	done := make(chan struct{}, 2)
	cp := func(dst, src *net.TCPConn) {
		_, _ = io.Copy(dst, src)
		// Half-close so the peer sees EOF, as a transparent relay would.
		_ = dst.CloseWrite()
		done <- struct{}{}
	}
	go cp(upstream, client)
	go cp(client, upstream)
	<-done
	<-done
}
