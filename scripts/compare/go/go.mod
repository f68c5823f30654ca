module poolguard.compare/syncpool

go 1.19
