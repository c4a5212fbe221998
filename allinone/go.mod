module github.com/presencehq/presence/allinone

go 1.26.8
