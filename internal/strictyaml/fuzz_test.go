package strictyaml_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/rackstrap/rackstrap/internal/strictyaml"
)

// FuzzCheck feeds arbitrary bytes through ReadDocument and every kind of
// Checker: nothing panics, every error has a position and a message, and a
// document that passes the check decodes without error (the promise the
// formats rely on).
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"name: a\ncount: 3\nsmall: 255\nratio: 1.5\non: true\ntags: [x, y]\nlabels: {a: b}\n" +
			"disk: {model: m, sizeGB: 10}\ndisks: [{model: m, sizeGB: 1}]\nspeed: 100G\nmode: '0644'\ndir: /x\nplain: p\n",
		"nmae: a\nname: b\nname: c\n",
		"? [a]\n: x\nlabels: {? {b: c} : d, e: f, e: g}\n",
		"name: &n a\ndir: *n\ndisk: &d {model: m, sizeGB: x}\ndisks: [*d, *d]\n",
		"a: &a [*a]\n",
		"name: ~\ndisk: null\ntags:\ncount: ~\non: ~\n",
		"count: 99999999999999999999\nsmall: -1\nratio: .inf\n",
		"speed: {gbps: 1, mbps: 2}\nmode: [1]\n",
		"labels: {1: a, ~: b, true: c}\n",
		"<<: {name: a}\n",
		"name: !!binary aGk=\nplain: 2001-12-14t21:59:43.10-05:00\n",
		"- a\n",
		"a: 1\n---\nb: 2\n",
		"",
	} {
		f.Add([]byte(s))
	}
	checkers := []strictyaml.Checker{
		{},
		{Nulls: strictyaml.NullForPointers},
		{Nulls: strictyaml.NullAnywhere, RefuseAliases: "no aliases", UnknownAtParent: true, MaxDepth: 4,
			Messages: strictyaml.Messages{UnknownKey: strictyaml.UnknownKey}},
		{Nulls: strictyaml.NullAnywhere, RefuseAliases: "no anchors", RefuseAnchors: true},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := strictyaml.ReadDocument(data)
		if err != nil {
			if !errors.Is(err, strictyaml.ErrEmpty) {
				if _, msg := strictyaml.Locate(err); msg == "" {
					t.Fatalf("Locate(%v) gave no message", err)
				}
			}
			return
		}
		for i := range checkers {
			errs, nodes := checkers[i].Check(doc.Root, reflect.TypeFor[Doc](), "")
			for _, e := range errs {
				if e.Line < 1 || e.Column < 1 || e.Msg == "" {
					t.Fatalf("checker %d: error without a position or message: %#v", i, e)
				}
			}
			if len(errs) > 0 {
				continue
			}
			if nodes[""] == nil {
				t.Fatalf("checker %d: no node recorded for the root", i)
			}
			var d Doc
			if err := doc.Root.Decode(&d); err != nil {
				t.Fatalf("checker %d passed %q but Decode = %v", i, data, err)
			}
		}
	})
}
