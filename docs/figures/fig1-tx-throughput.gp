set datafile separator whitespace
set key inside right top box opaque
set grid
set border 3
set tics nomirror
set pointsize 1.2
set style line 1 lc rgb '#000000' lw 2 pt 5
set style line 2 lc rgb '#1f77b4' lw 2 pt 7
set style line 3 lc rgb '#d62728' lw 2 pt 9
set style line 4 lc rgb '#2ca02c' lw 2 pt 11
set style line 5 lc rgb '#9467bd' lw 2 pt 13
set style line 6 lc rgb '#ff7f0e' lw 2 pt 3
set style line 9 lc rgb '#000000' lw 2 pt 6 ps 3
set title 'TX: download throughput vs loss (anic, simulated NIC)'
set xlabel 'TX loss (% of packets dropped NIC -> client)'
set ylabel 'throughput (MB/s, 10^6 B/s)'
set yrange [0:*]
set xrange [-0.25:*]
plot 'fig1-tx-throughput.dat' index 0 using ($1+-0.08):2:3:4 with yerrorlines ls 1 title "plain", 'fig1-tx-throughput.dat' index 1 using ($1+-0.04):2:3:4 with yerrorlines ls 2 title "sw", 'fig1-tx-throughput.dat' index 2 using ($1+0):2:3:4 with yerrorlines ls 3 title "nic", 'fig1-tx-throughput.dat' index 3 using ($1+0.04):2:3:4 with yerrorlines ls 4 title "nic-tagcache", 'fig1-tx-throughput.dat' index 4 using ($1+0.08):2:3:4 with yerrorlines ls 5 title "mbedtls"
